"""CustomX: published layout, kohya LoRA merge by the authors' rule, and the training-free conditioning
(scene video + visibility along a path, anchor masks, views, autoregressive clip plan)."""
import json
import os

import pytest
import torch
from safetensors.torch import save_file

from vibeboard.stagecraft import customx, handoff

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = json.load(open(os.path.join(ROOT, "workflows", "inputs", "stagecraft_blocking.json")))


class TinyHunyuan(torch.nn.Module):
    """Module names as in HunyuanVideo's original code (double_blocks.N.img_attn_qkv ...)."""

    def __init__(self):
        super().__init__()
        block = torch.nn.Module()
        block.img_attn_qkv = torch.nn.Linear(8, 24)
        block.img_mlp = torch.nn.Module()
        block.img_mlp.fc1 = torch.nn.Linear(8, 16)
        self.double_blocks = torch.nn.ModuleList([block, block.__class__()])
        self.double_blocks[1].img_attn_qkv = torch.nn.Linear(8, 24)


def test_layout_reports_missing_files(tmp_path):
    assert customx.check_layout(str(tmp_path))["missing"] == list(customx.LAYOUT.values())
    (tmp_path / "lora").mkdir()
    save_file({"x": torch.zeros(1)}, str(tmp_path / "lora" / "pytorch_lora_kohaya_weights.safetensors"))
    assert customx.check_layout(str(tmp_path))["present"] == [customx.LAYOUT["lora"]]


def test_kohya_lora_merges_up_at_down_into_the_named_layers(tmp_path):
    torch.manual_seed(0)
    model = TinyHunyuan()
    before = model.double_blocks[1].img_attn_qkv.weight.clone()
    fc1 = model.double_blocks[0].img_mlp.fc1.weight.clone()
    up, down = torch.randn(24, 4), torch.randn(4, 8)
    up2, down2 = torch.randn(16, 4), torch.randn(4, 8)
    path = str(tmp_path / "pytorch_lora_kohaya_weights.safetensors")
    save_file({"lora_unet_double_blocks_1_img_attn_qkv.lora_up.weight": up,
               "lora_unet_double_blocks_1_img_attn_qkv.lora_down.weight": down,
               "lora_unet_double_blocks_1_img_attn_qkv.alpha": torch.tensor(4.0),
               "lora_unet_double_blocks_0_img_mlp_fc1.lora_up.weight": up2,
               "lora_unet_double_blocks_0_img_mlp_fc1.lora_down.weight": down2}, path)
    pairs = customx.read_kohya_lora(path)
    assert customx.merge_lora(model, pairs, scale=0.5) == 2
    assert torch.allclose(model.double_blocks[1].img_attn_qkv.weight, before + 0.5 * up @ down, atol=1e-5)
    assert torch.allclose(model.double_blocks[0].img_mlp.fc1.weight, fc1 + 0.5 * up2 @ down2, atol=1e-5)
    with pytest.raises(KeyError, match="no sub-module"):
        customx.merge_lora(model, {"single_blocks_0_linear1": (up, down)})


def test_scene_video_and_visibility_follow_the_camera_path():
    path = handoff.shot_camera_path(SAMPLE, "1", width=64, height=36)
    # a wall of points 4 m in front of the first camera: visible at the start, empty where it does not reach
    ys, xs = torch.meshgrid(torch.linspace(0, 3, 40), torch.linspace(-1, 1, 40), indexing="ij")
    points = torch.stack([xs.flatten(), ys.flatten(), torch.full((1600,), -3.0)], -1).double()
    colours = torch.rand(1600, 3, dtype=torch.float64)
    frames, seen = customx.scene_video(points, colours, path)
    assert frames.shape == (24, 36, 64, 3) and seen.shape == (24, 36, 64)
    assert seen[0].any() and not seen[0].all()


def test_anchor_masks_views_and_autoregressive_plan():
    boxes = handoff.shot_boxes(SAMPLE, "1", 64, 36)
    masks = customx.anchor_masks(boxes, 24, 36, 64)
    assert masks.shape == (24, 36, 64) and masks.sum() > 0
    assert customx.pick_views(list(range(8))) == [0, 2, 4, 6]
    plan = customx.clip_plan(300)
    assert plan[0] == (0, 129, 0) and plan[1] == (96, 225, 33)
    clips = [torch.arange(s, e).float().view(-1, 1, 1, 1).expand(-1, 2, 2, 3) for s, e, _ in plan]
    merged = customx.merge_clips(clips, plan)
    assert len(merged) == 300 and torch.equal(merged[:, 0, 0, 0], torch.arange(300).float())
