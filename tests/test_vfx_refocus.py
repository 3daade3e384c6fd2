import os

import pytest
import torch

from vibeboard.optics import learn2refocus as L


def tiny_unet(seed=0, in_channels=8):
    from diffusers import UNetSpatioTemporalConditionModel
    torch.manual_seed(seed)
    return UNetSpatioTemporalConditionModel(
        sample_size=8, in_channels=in_channels, out_channels=4, block_out_channels=(32, 32),
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"), layers_per_block=1,
        cross_attention_dim=16, num_attention_heads=(2, 2), addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=24, transformer_layers_per_block=1).eval()


def tiny_parts(seed=0):
    from diffusers import AutoencoderKLTemporalDecoder
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
    torch.manual_seed(seed)
    vae = AutoencoderKLTemporalDecoder(block_out_channels=(32, 32),
                                       down_block_types=("DownEncoderBlock2D",) * 2, latent_channels=4,
                                       layers_per_block=1).eval()
    enc = CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                                         num_attention_heads=2, image_size=224, patch_size=56,
                                                         projection_dim=16)).eval()
    return vae, enc


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
