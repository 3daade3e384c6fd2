"""Review-pack: the Wan VAE path InfCam shares runs the VAE in the VAE's dtype (bf16) whatever the compute dtype is."""
import torch

from vibeboard.shots import tiny_models
from vibeboard.wan import conditioning as C
from vibeboard.wan.handle import WanHandle


def test_infcam_vae_round_trip_with_fp16_compute_and_bf16_vae():
    vae = tiny_models.wan_vae(seed=0).to(torch.bfloat16)   # the loader keeps the VAE in bf16 for fp16 compute
    wan = WanHandle.from_modules(vae=vae, dtype=torch.float16, variant="t2v")
    frames = torch.rand(5, 16, 16, 3)
    lat = C.normalize(wan, C.vae_encode(wan, C.images_to_video(frames)))
    assert lat.dtype == torch.float32 and lat.shape[2] == 2
    out = C.video_to_images(C.vae_decode(wan, C.denormalize(wan, lat)))
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
