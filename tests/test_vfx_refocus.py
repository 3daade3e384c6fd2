import os

import pytest
import torch

from vibeboard.optics import learn2refocus as L


from vfx_helpers import tiny_svd_parts as tiny_parts
from vfx_helpers import tiny_svd_unet as tiny_unet


def test_stack_condition_puts_latent_at_focal_index():
    z = torch.randn(1, 4, 3, 5)
    c = L.stack_condition(z, 6)
    assert c.shape == (1, 9, 4, 3, 5)
    assert torch.equal(c[:, 6], z) and c[:, :6].abs().sum() == 0 and c[:, 7:].abs().sum() == 0
    with pytest.raises(ValueError):
        L.stack_condition(z, 9)


def test_working_size_limits_pixels():
    h, w = L.working_size(3024, 4032)
    assert h * w <= 500_000 and h % 64 == 0 and w % 64 == 0
    assert L.working_size(128, 192) == (128, 192)


@torch.no_grad()
def test_checkpoint_folder_layout_and_tiny_focal_stack(tmp_path):
    unet = tiny_unet()
    folder = tmp_path / "learn2refocus" / "checkpoint-200000" / "unet"
    unet.save_pretrained(str(folder), safe_serialization=True)
    assert (folder / "config.json").exists()
    assert any(n.endswith(".safetensors") for n in os.listdir(folder))
    loaded = L.load_refocus_unet(str(folder.parent), dtype=torch.float32)
    for (k1, v1), (k2, v2) in zip(unet.state_dict().items(), loaded.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)
    vae, enc = tiny_parts()
    model = L.RefocusModel(loaded, vae, enc, dict(L.SVD_SCHEDULER))
    img = torch.rand(1, 16, 24, 3, generator=torch.Generator().manual_seed(0))
    stack = L.focal_stack(model, img, focal_index=2, steps=2, size=(16, 24))
    assert stack.shape == (9, 16, 24, 3) and torch.isfinite(stack).all()
    moved = L.focal_stack(model, img, focal_index=5, steps=2, size=(16, 24))
    assert not torch.equal(stack, moved)  # the focal index conditions the result


def test_rejects_wrong_unet(tmp_path):
    unet = tiny_unet(in_channels=4)
    unet.save_pretrained(str(tmp_path / "unet"), safe_serialization=True)
    with pytest.raises(ValueError, match="8"):
        L.load_refocus_unet(str(tmp_path))
    with pytest.raises(FileNotFoundError):
        L.load_refocus_unet(str(tmp_path / "nothing"))
