"""Review-pack: InfCam's own VAE path runs the VAE in the VAE's dtype (bf16) whatever the compute dtype is."""
import torch

from vibeboard.shots import tiny_models
from vibeboard.vfx import infcam_sampler as S


def test_infcam_vae_round_trip_with_fp16_compute_and_bf16_vae():
    vae = tiny_models.wan_vae(seed=0).to(torch.bfloat16)   # the loader keeps the VAE in bf16 for fp16 compute
    frames = torch.rand(5, 16, 16, 3)
    lat = S.vae_encode(vae, frames, "cpu", torch.float16)
    assert lat.dtype == torch.float16 and lat.shape[2] == 2
    out = S.vae_decode(vae, lat)
    assert out.dtype == torch.float32 and out.shape == (5, 16, 16, 3)


def test_infcam_loader_with_wan_refuses_a_pickled_checkpoint_clearly(tmp_path, monkeypatch):
    import pytest

    from vibeboard.common import runtime
    from vibeboard.common.runtime import NodeInputError
    from vibeboard.vfx.nodes import VBInfCamLoader

    monkeypatch.setattr(runtime, "_dirs", {"models": str(tmp_path)})
    (tmp_path / "infcam.ckpt").write_bytes(b"not a safetensors file")
    with pytest.raises(NodeInputError) as err:
        VBInfCamLoader().load("infcam.ckpt", "", "", "", "bf16", "cpu", wan=object())
    assert err.value.input_name == "checkpoint"
