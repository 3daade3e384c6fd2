"""vibeboard's torchvision-free Qwen2-VL processor: grid sizes, patch layout, normalisation from the checkpoint's
preprocessor_config.json, and the image-token expansion Qwen-Image-Edit's prompt encoder relies on."""
import math

import numpy as np
import pytest
import torch
from PIL import Image

from qwen_helpers import write_processor_folder
from vibeboard.vfx.qwen_vl_processor import QwenVLProcessor, expand_image_tokens, standard_processor_available

MEAN, STD = [0.5, 0.25, 0.75], [0.2, 0.3, 0.4]  # not CLIP's, so the config's values must be the ones used


@pytest.fixture(scope="module")
def proc(tmp_path_factory):
    folder = write_processor_folder(tmp_path_factory.mktemp("qwen") / "processor", image_mean=MEAN, image_std=STD)
    return QwenVLProcessor.from_folder(str(folder))


def smart_resize(h, w, factor=28, min_pixels=3136, max_pixels=12845056):
    """Qwen2-VL's rule, written out: nearest multiples of 28, scaled into [min, max] pixels keeping the aspect."""
    hb, wb = round(h / factor) * factor, round(w / factor) * factor
    if hb * wb > max_pixels:
        beta = math.sqrt(h * w / max_pixels)
        hb, wb = max(factor, math.floor(h / beta / factor) * factor), max(factor, math.floor(w / beta / factor) * factor)
    elif hb * wb < min_pixels:
        beta = math.sqrt(min_pixels / (h * w))
        hb, wb = math.ceil(h * beta / factor) * factor, math.ceil(w * beta / factor) * factor
    return hb, wb


def unpatchify(pixel_values, grid, patch=14, merge=2, temporal=2):
    """Rows ordered (h/2, w/2, 2, 2) merge blocks, each row (C, T, 14, 14) → [T, C, H, W]."""
    _, gh, gw = grid
    x = pixel_values.reshape(gh // merge, gw // merge, merge, merge, 3, temporal, patch, patch)
    x = x.permute(5, 4, 0, 2, 6, 1, 3, 7)  # T, C, gh/m, m, p, gw/m, m, p
    return x.reshape(temporal, 3, gh * patch, gw * patch)


@pytest.mark.parametrize("hw", [(100, 150), (320, 448), (20, 20), (30, 3000)])
def test_grid_follows_smart_resize(proc, hw):
    h, w = hw
    out = proc.image_processor(images=[Image.new("RGB", (w, h))], return_tensors="pt")
    rh, rw = smart_resize(h, w)
    assert out["image_grid_thw"].tolist() == [[1, rh // 14, rw // 14]]
    assert out["pixel_values"].shape == ((rh // 14) * (rw // 14), 3 * 2 * 14 * 14)


def test_pipeline_condition_size_gives_expected_tokens(proc):
    # Qwen-Image-Edit resizes each image to ≈384² px in multiples of 32 (4:3 → 448×320) before the processor
    out = proc(text=["<|vision_start|><|image_pad|><|vision_end|>hi"], images=[Image.new("RGB", (448, 320))])
    assert out["image_grid_thw"].tolist() == [[1, 22, 32]]  # 320 → 308, 448 → 448
    assert int((out["input_ids"] == proc.image_token_id).sum()) == 22 * 32 // 4


def test_patch_layout_round_trip_and_normalisation(proc):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (56, 84, 3), dtype=np.uint8)  # multiples of 28: no resize
    out = proc.image_processor(images=[Image.fromarray(pixels)], return_tensors="pt")
    grid = out["image_grid_thw"][0].tolist()
    assert grid == [1, 4, 6]
    frames = unpatchify(out["pixel_values"], grid)
    expected = (torch.from_numpy(pixels).float().permute(2, 0, 1) / 255 - torch.tensor(MEAN)[:, None, None]) \
        / torch.tensor(STD)[:, None, None]
    assert torch.allclose(frames[0], expected, atol=1e-5)
    assert torch.equal(frames[0], frames[1])  # a still image fills both temporal slots
    # the first row is the top-left 14×14 patch, the second its right neighbour (2×2 merge blocks)
    row1 = out["pixel_values"][1].reshape(3, 2, 14, 14)[:, 0]
    assert torch.allclose(row1, expected[:, :14, 14:28], atol=1e-5)
    row2 = out["pixel_values"][2].reshape(3, 2, 14, 14)[:, 0]
    assert torch.allclose(row2, expected[:, 14:28, :14], atol=1e-5)


def test_image_tokens_expand_per_image_in_order(proc):
    text = ("<|im_start|>user\nPicture 1: <|vision_start|><|image_pad|><|vision_end|>"
            "Picture 2: <|vision_start|><|image_pad|><|vision_end|>make it red<|im_end|>")
    images = [Image.new("RGB", (56, 56)), Image.new("RGB", (112, 56))]  # grids 4×4 and 4×8
    out = proc(text=[text], images=images, padding=True, return_tensors="pt")
    ids = out["input_ids"][0].tolist()
    start = proc.tokenizer.convert_tokens_to_ids("<|vision_start|>")
    end = proc.tokenizer.convert_tokens_to_ids("<|vision_end|>")
    spans = [ids[i + 1:ids.index(end, i)] for i, t in enumerate(ids) if t == start]
    assert [len(s) for s in spans] == [4, 8] and all(t == proc.image_token_id for s in spans for t in s)
    assert out["image_grid_thw"].tolist() == [[1, 4, 4], [1, 4, 8]]
    assert out["pixel_values"].shape == (16 + 32, 1176)
    assert torch.equal(out["mm_token_type_ids"], (out["input_ids"] == proc.image_token_id).int())
    assert out["attention_mask"].all()
    # text without images passes through; a mismatch is an error, not a silent misalignment
    assert "pixel_values" not in proc(text=["no image"])
    with pytest.raises(ValueError):
        expand_image_tokens(["<|image_pad|>"], [[1, 4, 4], [1, 4, 4]], 2)
    with pytest.raises(ValueError):
        expand_image_tokens(["<|image_pad|><|image_pad|>"], [[1, 4, 4]], 2)


def test_loader_picks_the_fallback_without_torchvision(tmp_path):
    if standard_processor_available():
        pytest.skip("torchvision is importable here: the loader uses transformers' Qwen2VLProcessor")
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    folder = write_processor_folder(tmp_path / "processor")
    proc = QwenVLProcessor.from_folder(str(folder))
    assert isinstance(proc.image_processor, Qwen2VLImageProcessorPil)
    assert proc.image_processor.size["longest_edge"] == 12845056 and proc.image_processor.merge_size == 2
