"""Shot Studio workflow end to end on tiny random models in the published layouts (embedded executor)."""
import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from vibeboard_runner.executor import Executor
from vibeboard_runner.registry import NodeRegistry
from vibeboard_runner.workflow import load_workflow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WF = os.path.join(ROOT, "workflows")


def _storymem_lora(path, seed):
    """StoryMem's published layout: PEFT on the original Wan names (base_model.model.blocks.N.self_attn.q...)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for i in range(2):
        for part in ("self_attn", "cross_attn"):
            for p in "qkvo":
                sd[f"base_model.model.blocks.{i}.{part}.{p}.lora_A.weight"] = torch.randn(4, 32, generator=g) * .05
                sd[f"base_model.model.blocks.{i}.{part}.{p}.lora_B.weight"] = torch.randn(32, 4, generator=g) * .05
        sd[f"base_model.model.blocks.{i}.ffn.0.lora_A.weight"] = torch.randn(4, 32, generator=g) * .05
        sd[f"base_model.model.blocks.{i}.ffn.0.lora_B.weight"] = torch.randn(64, 4, generator=g) * .05
        sd[f"base_model.model.blocks.{i}.ffn.2.lora_A.weight"] = torch.randn(4, 64, generator=g) * .05
        sd[f"base_model.model.blocks.{i}.ffn.2.lora_B.weight"] = torch.randn(32, 4, generator=g) * .05
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_file(sd, path)


@pytest.fixture(scope="module")
def models_root(tmp_path_factory):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
    from vibeboard.models import tiny
    root = tmp_path_factory.mktemp("models")
    paths = tiny.write_comfy_layout(str(root), kinds=("i2v", "vace"))
    dm = root / "diffusion_models"
    shutil.copy(paths["i2v"], dm / "wan2.2_i2v_high_noise_14B_fp16.safetensors")
    shutil.copy(paths["i2v"], dm / "wan2.2_i2v_low_noise_14B_fp16.safetensors")
    _storymem_lora(str(root / "loras/StoryMem/Wan2.2-MI2V-A14B/backbone_high_noise.safetensors"), 1)
    _storymem_lora(str(root / "loras/StoryMem/Wan2.2-MI2V-A14B/backbone_low_noise.safetensors"), 2)
    cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8, projection_dim=16)
    torch.manual_seed(0)
    CLIPVisionModelWithProjection(cfg).save_pretrained(str(root / "clip" / "clip-vit-base-patch32"))
    return root


def _small(prompt, size=32, frames=5):
    for node in prompt.values():
        inp = node["inputs"]
        for key, value in (("width", size), ("height", size), ("length", frames), ("num_frames", frames)):
            if key in inp:
                inp[key] = value
        if node["class_type"] == "VBWanSamplerSettings":
            inp["steps"] = 2
        if node["class_type"] == "VBWanModelLoader" and "i2v" in inp["model"]:
            inp["clip_vision"] = "clip_vision_h.safetensors"  # the tiny I2V is Wan2.1-style (CLIP image tokens)
        if node["class_type"] == "VBStoryMemoryUpdate":
            inp["threshold"] = 0.9999  # a random CLIP squeezes similarities towards 1
        if node["class_type"] == "VBLocationMemoryUpdate":
            inp["every_n_frames"] = 2
    return prompt


def test_ui_and_api_workflows_agree():
    reg = NodeRegistry.default(embedded=True)
    api = json.load(open(os.path.join(WF, "shot_studio.api.json")))
    from_ui = load_workflow(os.path.join(WF, "shot_studio.json"), reg)
    assert set(from_ui) == set(api)
    for k, node in api.items():
        assert from_ui[k]["class_type"] == node["class_type"]
        assert from_ui[k]["inputs"] == node["inputs"], k


def test_shot_studio_runs_end_to_end_on_tiny_models(models_root, tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(inp / "character.png")
    Image.fromarray((64 + rng.random((32, 32, 3)) * 128).astype(np.uint8)).save(inp / "set_depth.png")
    shutil.copy(os.path.join(WF, "inputs", "shot_studio_blocking.json"), inp / "shot_studio_blocking.json")
    ex = Executor(NodeRegistry.default(), output_dir=tmp_path / "out", input_dir=inp, temp_dir=tmp_path / "t",
                  models_dir=str(models_root))
    prompt = _small(json.load(open(os.path.join(WF, "shot_studio.api.json"))))
    res = ex.execute(prompt)
    assert res.status == "success", res.error
    out = tmp_path / "out"
    files = res.output_files()
    videos = [f for f in files if f["filename"].endswith(".mp4")]
    assert len(videos) == 4
    manifest = json.load(open(out / "stories/lighthouse/memory/manifest.json"))
    shots = [e["shot"] for e in manifest["entries"]]
    assert shots.count(0) == 1 and shots.count(1) >= 1        # the reference + shot 1's keyframes
    from vibeboard.shots.spatia import load_ply
    assert len(load_ply(str(out / "stories/lighthouse/sets/lamp_room/point_cloud.ply"))) > 0

    # a later run: shot 2 alone remembers shot 1 from disk (memory bank loaded by folder)
    later = {k: v for k, v in prompt.items() if k in ("1", "2", "3", "5")}
    later["7"] = {"class_type": "VBStoryMemoryLoad", "inputs": {"memory_dir": "stories/lighthouse/memory",
                                                               "max_size": 8, "keep_first": 3,
                                                               "create_if_missing": False}}
    later["12"] = dict(prompt["12"], inputs=dict(prompt["12"]["inputs"], memory=["7", 0]))
    later["50"] = {"class_type": "PreviewImage", "inputs": {"images": ["12", 1]}}
    res2 = ex.execute(later)
    assert res2.status == "success", res2.error
    assert len(res2.outputs["50"]["images"]) == len(manifest["entries"])

    # location memory toggle off: a blank control and an all-ones mask
    toggled = dict(prompt)
    toggled["35"] = dict(prompt["35"], inputs=dict(prompt["35"]["inputs"], enabled=False))
    res3 = ex.execute(toggled)
    assert res3.status == "success", res3.error
