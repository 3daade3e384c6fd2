"""Regenerate workflows/shot_studio.json (UI) and workflows/shot_studio.api.json (API twin).

Shot 1 (StoryMem, memory seeded from a character reference) -> memory update -> shot 2 with memory -> Block Scene
on shot 2 from a blocking file (Wan2.1 VACE) -> location memory from shot 1 rendered along shot 3's path
(toggle 'enabled' on the render node) -> shot 3 with Wan VACE. The API twin is written from the UI file's
conversion, so the two agree exactly.

    python tools/make_shot_studio.py
"""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "custom_nodes"), ROOT]
OUT = os.path.join(ROOT, "workflows")
NEG = "blurry, low quality, distorted, watermark, text, static, still picture"
W, H, L = 832, 480, 81
from vibeboard_runner.registry import NodeRegistry  # noqa: E402
from vibeboard_runner.ui_export import api_to_ui  # noqa: E402
from vibeboard_runner.workflow import load_workflow  # noqa: E402

prompt = {}


def link(node, output=0):
    return [str(node), output]


def add(node_id, class_type, **inputs):
    prompt[str(node_id)] = {"class_type": class_type, "inputs": inputs, "_meta": {"title": ""}}


# --- StoryMem: shots 1 and 2 on Wan2.2-I2V-A14B + StoryMem LoRA
add(1, "VBWanModelLoader", model="wan2.2_i2v_high_noise_14B_fp16.safetensors", vae="wan_2.1_vae.safetensors",
    text_encoder="umt5_xxl_fp8_e4m3fn_scaled.safetensors", dtype="bf16", clip_vision="none",
    model_2="wan2.2_i2v_low_noise_14B_fp16.safetensors")
add(2, "VBStoryMemLoRA", wan=link(1), high_noise_lora="StoryMem/Wan2.2-MI2V-A14B/backbone_high_noise.safetensors",
    low_noise_lora="StoryMem/Wan2.2-MI2V-A14B/backbone_low_noise.safetensors", strength=1.0, alpha=128.0, rslora=True)
add(3, "VBWanSamplerSettings", steps=40, cfg=3.5, shift=4.0, scheduler="unipc", seed=42, attention="auto",
    cfg_low_noise=0.0, compile=False, batch_cfg=True)
add(4, "VBWanTextEncode", wan=link(2), prompt="Shot 1. A lighthouse keeper in a yellow raincoat climbs the spiral "
    "stairs at dusk, lantern in hand.", negative_prompt=NEG)
add(5, "VBWanTextEncode", wan=link(2), prompt="Shot 2. The same keeper reaches the lamp room and looks out over the "
    "stormy sea.", negative_prompt=NEG)
add(6, "LoadImage", image="character.png")
add(7, "VBStoryMemoryLoad", memory_dir="stories/lighthouse/memory", max_size=8, keep_first=3, create_if_missing=True,
    reference_images=link(6))
add(8, "VBStoryMemShot", wan=link(2), text=link(4), memory=link(7), width=W, height=H, length=L, sampler=link(3), rope_gap=5,
    memory_mode="free")
add(9, "VBWanVAEDecode", wan=link(1), latent=link(8), tiled=False)
add(10, "VBSaveVideo", images=link(9), fps=16.0, filename_prefix="shot_studio/shot1", crf=19, preset="medium")
add(11, "VBStoryMemoryUpdate", memory=link(7), shot_frames=link(9), clip_model="clip-vit-base-patch32", threshold=0.9,
    max_keyframes=3, shot=1, prompt="shot 1", stride=1, quality_gate="none", min_score=0.0, dedup_threshold=0.9,
    save=True)
add(12, "VBStoryMemShot", wan=link(2), text=link(5), memory=link(11, 0), width=W, height=H, length=L, sampler=link(3),
    rope_gap=5, memory_mode="free")
add(13, "VBWanVAEDecode", wan=link(1), latent=link(12), tiled=False)
add(14, "VBSaveVideo", images=link(13), fps=16.0, filename_prefix="shot_studio/shot2", crf=19, preset="medium")
# --- Block Scene: boxes from a blocking file, generated over shot 2 with Wan2.1-VACE-1.3B
add(20, "VBWanModelLoader", model="wan2.1_vace_1.3B_fp16.safetensors", vae="wan_2.1_vae.safetensors",
    text_encoder="umt5_xxl_fp8_e4m3fn_scaled.safetensors", dtype="bf16", clip_vision="none", model_2="none")
add(21, "VBWanTextEncode", wan=link(20), prompt="The lamp room of a lighthouse at night, storm outside.",
    negative_prompt=NEG)
add(22, "VBBoxesLoad", blocking="shot_studio_blocking.json", shot="2")
add(23, "VBBoxRegionGenerate", wan=link(20), text=link(21), boxes=link(22), plate=link(13), width=W, height=H, length=L,
    sampler=link(3), regional_prompts=True, include_global_in_boxes=False, vace_strength=1.0)
add(24, "VBWanVAEDecode", wan=link(20), latent=link(23), tiled=False)
add(25, "VBSaveVideo", images=link(24), fps=16.0, filename_prefix="shot_studio/shot2_blocked", crf=19, preset="medium")
# --- Location memory: the set from shot 1 (depth + camera), rendered along shot 3's path (toggle 'enabled')
add(30, "VBLocationMemoryLoad", location_dir="stories/lighthouse/sets/lamp_room", voxel_size=0.0,
    create_if_missing=True)
add(31, "LoadImage", image="set_depth.png")
add(32, "VBCameraPreset", motion="static", num_frames=L, width=W, height=H, fov_deg=60.0, speed=1.0,
    easing="ease_in_out", subject_distance=1.0, shake=0.0, seed=0)
add(33, "VBLocationMemoryUpdate", location=link(30), images=link(9), depth=link(31), camera_path=link(32, 0),
    depth_mode="inverse", depth_scale=1.0, every_n_frames=16, pixel_stride=2, save=True)
add(34, "VBCameraPreset", motion="orbit_right", num_frames=L, width=W, height=H, fov_deg=60.0, speed=0.5,
    easing="ease_in_out", subject_distance=2.0, shake=0.0, seed=0)
add(35, "VBLocationRender", location=link(33), camera_path=link(34, 0), enabled=True, point_radius=1, reference_count=2)
add(36, "VBWanTextEncode", wan=link(20), prompt="Shot 3. Back in the lamp room, the camera circles the great lens.",
    negative_prompt=NEG)
add(37, "VBWanVACE", wan=link(20), text=link(36), width=W, height=H, length=L, strength=1.0, control_video=link(35, 0),
    control_masks=link(35, 1), sampler=link(3))
add(38, "VBWanVAEDecode", wan=link(20), latent=link(37), tiled=False)
add(39, "VBSaveVideo", images=link(38), fps=16.0, filename_prefix="shot_studio/shot3_location", crf=19, preset="medium")
add(40, "VBStoryMemorySave", memory=link(11))
add(41, "VBLocationMemorySave", location=link(33))
titles = {"1": "Wan2.2 I2V A14B", "2": "StoryMem LoRA", "7": "Story memory (MR2V: character reference)",
          "8": "Shot 1", "11": "Update memory from shot 1", "12": "Shot 2 (remembers shot 1)",
          "20": "Wan2.1 VACE 1.3B", "22": "Blocking file", "23": "Block Scene on shot 2",
          "30": "Set memory", "35": "Location memory toggle (enabled)", "37": "Shot 3 with location memory"}
for k, v in prompt.items():
    v["_meta"]["title"] = titles.get(k, "")
reg = NodeRegistry.default(embedded=True)
clean = {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in prompt.items()}
ui = api_to_ui(clean, reg)
for n in ui["nodes"]:
    t = titles.get(str(n["id"]))
    if t:
        n["title"] = t
json.dump(ui, open(os.path.join(OUT, 'shot_studio.json'), 'w'), indent=1)
back = load_workflow(ui, reg)  # the API twin takes the UI file's conversion (defaults filled in)
for k in prompt:
    prompt[k]["inputs"] = back[k]["inputs"]
json.dump(prompt, open(os.path.join(OUT, 'shot_studio.api.json'), 'w'), indent=1)
print(f"wrote {len(prompt)} nodes to workflows/shot_studio.json and shot_studio.api.json")
