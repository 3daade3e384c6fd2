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
