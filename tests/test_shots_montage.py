"""DreaMontage-style keyframes: control video/mask layout, latent alignment, VACE sampling shape."""
import torch

from vibeboard.shots import keyframes_montage as km
from vibeboard.shots import tiny_models


def test_keyframes_land_on_whole_latent_frames():
    red = torch.zeros(8, 8, 3)
    red[..., 0] = 1
    blue = torch.zeros(1, 8, 8, 3)
    blue[..., 2] = 1
    control, mask, used = km.montage_control([(0, red), (10, blue), (-1, red)], 17, 16, 16)
    assert control.shape == (17, 16, 16, 3) and mask.shape == (17, 16, 16)
    assert used == [0, 9, 10, 11, 12, 13, 14, 15, 16]     # frame 10 -> latent 3 (9..12); last -> latent 4
    assert mask[used].eq(0).all() and mask[[1, 2, 3, 4, 5, 6, 7, 8]].eq(1).all()
    assert torch.allclose(control[10, 0, 0], torch.tensor([0.0, 0.0, 1.0]))
    assert torch.allclose(control[5, 0, 0], torch.tensor([0.5, 0.5, 0.5]))
    assert km.latent_frames_constrained(mask) == [0, 3, 4]
    _, raw_mask, raw_used = km.montage_control([(10, red)], 17, 16, 16, snap_to_latent=False)
    assert raw_used == [10]


def test_generate_montage_runs_on_tiny_vace():
    from vibeboard.wan import sampler as S
    from vibeboard.wan.handle import WanHandle
    wan = WanHandle.from_modules(transformer=tiny_models.wan_vace_transformer(), vae=tiny_models.wan_vae())
    img = torch.rand(16, 16, 3)
    cond = km.montage_conditioning(wan, [(0, img), (8, img)], 9, 16, 16, torch.randn(1, 6, 32))
    lat = S.sample(wan, cond, S.SamplerSettings(steps=2), (1, 16, 3, 2, 2), normalized=True)
    assert lat.shape == (1, 16, 3, 2, 2) and torch.isfinite(lat).all()
