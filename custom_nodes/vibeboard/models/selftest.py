"""Self-test material: tiny models in the published layouts + one API-format workflow per Wan mode.

`vibeboard selftest` and the tests both use `prepare()` and `workflows()`: the workflows reference the tiny
files by the same names the real ones have, so they exercise the loaders' file resolution too.
"""
from __future__ import annotations

import os

import numpy as np

from . import tiny

FRAMES, HEIGHT, WIDTH = 5, 32, 32


def prepare(models_dir: str, input_dir: str) -> dict:
    """Write the tiny ComfyUI-layout models, a diffusers folder, a LoRA and two input images."""
    paths = tiny.write_comfy_layout(models_dir)
    paths["diffusers"] = tiny.write_diffusers_layout(
        os.path.join(models_dir, "diffusers", "Wan2.1-T2V-1.3B-Diffusers"), "t2v")
    paths["ti2v"] = tiny.write_diffusers_layout(
        os.path.join(models_dir, "diffusers", "Wan2.2-TI2V-5B-Diffusers"), "ti2v")
    from .loaders import load_wan_transformer
    t2v = load_wan_transformer(paths["t2v"], "fp32")
    paths["lora"] = os.path.join(models_dir, "loras", "tiny_wan_lora.safetensors")
    tiny.write_lora(paths["lora"], t2v, "kohya", alpha=4.0)
    from PIL import Image
    os.makedirs(input_dir, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in ("start.png", "end.png", "ref.png"):
        Image.fromarray(rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)).save(os.path.join(input_dir, name))
    return paths


def _loader(model: str, clip: str = "none", source: str = "files") -> dict:
    if source == "diffusers":
        return {"class_type": "VBWanModelLoader", "inputs": {
            "model": "diffusers/" + model, "vae": "(from diffusers folder)",
            "text_encoder": "(from diffusers folder)", "dtype": "fp32"}}
    return {"class_type": "VBWanModelLoader", "inputs": {
        "model": model, "vae": "wan_2.1_vae.safetensors", "text_encoder": "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
        "dtype": "fp32", "clip_vision": clip}}


def _base(model: str, clip: str = "none", source: str = "files") -> dict:
    return {
        "1": _loader(model, clip, source),
        "2": {"class_type": "VBWanTextEncode", "inputs": {"wan": ["1", 0], "prompt": "a red cat walks in the city",
                                                          "negative_prompt": "blurry"}},
        "3": {"class_type": "VBWanSamplerSettings", "inputs": {"steps": 2, "cfg": 4.0, "shift": 5.0,
                                                               "scheduler": "unipc", "seed": 7}},
    }


def _tail(prompt: dict, gen_id: str) -> dict:
    prompt["8"] = {"class_type": "VBWanVAEDecode", "inputs": {"wan": ["1", 0], "latent": [gen_id, 0]}}
    prompt["9"] = {"class_type": "VBInspect", "inputs": {"latent": [gen_id, 0], "images": ["8", 0]}}
    return prompt


def workflows() -> dict:
    """{name: (API prompt, expected LATENT shape, expected IMAGE shape)}."""
    size = {"width": WIDTH, "height": HEIGHT, "length": FRAMES}
    lat = [1, 16, (FRAMES - 1) // 4 + 1, HEIGHT // 8, WIDTH // 8]
    img = [FRAMES, HEIGHT, WIDTH, 3]
    out = {}
    p = _base("wan2.1_t2v_1.3B_bf16.safetensors")
    p["4"] = {"class_type": "VBWanT2V", "inputs": {"wan": ["1", 0], "text": ["2", 0], "sampler": ["3", 0], **size}}
    out["t2v"] = (_tail(p, "4"), lat, img)

    p = _base("Wan2.1-T2V-1.3B-Diffusers", source="diffusers")
    p["4"] = {"class_type": "VBWanT2V", "inputs": {"wan": ["1", 0], "text": ["2", 0], "sampler": ["3", 0], **size}}
    out["t2v_diffusers_folder"] = (_tail(p, "4"), lat, img)

    p = _base("wan2.1_t2v_1.3B_bf16.safetensors")
    p["5"] = {"class_type": "VBWanLoRA", "inputs": {"wan": ["1", 0], "lora_name": "tiny_wan_lora.safetensors",
                                                    "strength": 0.8}}
    p["4"] = {"class_type": "VBWanT2V", "inputs": {"wan": ["5", 0], "text": ["2", 0], "sampler": ["3", 0], **size}}
    out["t2v_lora"] = (_tail(p, "4"), lat, img)

    p = _base("wan2.1_i2v_480p_14B_bf16.safetensors", clip="clip_vision_h.safetensors")
    p["6"] = {"class_type": "LoadImage", "inputs": {"image": "start.png"}}
    p["7"] = {"class_type": "LoadImage", "inputs": {"image": "end.png"}}
    p["4"] = {"class_type": "VBWanI2V", "inputs": {"wan": ["1", 0], "text": ["2", 0], "sampler": ["3", 0],
                                                   "start_image": ["6", 0], "end_image": ["7", 0], **size}}
    out["i2v_first_last"] = (_tail(p, "4"), lat, img)

    p = _base("Wan2.2-TI2V-5B-Diffusers", source="diffusers")
    p["6"] = {"class_type": "LoadImage", "inputs": {"image": "start.png"}}
    p["4"] = {"class_type": "VBWanI2V", "inputs": {"wan": ["1", 0], "text": ["2", 0], "sampler": ["3", 0],
                                                   "start_image": ["6", 0], **size}}
    out["ti2v_5b_first_frame"] = (_tail(p, "4"), [1, 48, lat[2], HEIGHT // 16, WIDTH // 16], img)

    p = _base("wan2.1_vace_1.3B_fp16.safetensors")
    p["6"] = {"class_type": "LoadImage", "inputs": {"image": "start.png"}}
    p["7"] = {"class_type": "LoadImage", "inputs": {"image": "ref.png"}}
    p["4"] = {"class_type": "VBWanVACE", "inputs": {"wan": ["1", 0], "text": ["2", 0], "sampler": ["3", 0],
                                                    "strength": 1.0, "control_video": ["6", 0],
                                                    "control_masks": ["6", 1], "reference_images": ["7", 0],
                                                    **size}}
    out["vace"] = (_tail(p, "4"), lat, img)

    p = _base("wan2.1_t2v_1.3B_bf16.safetensors")
    p["4"] = {"class_type": "VBWanT2V", "inputs": {"wan": ["1", 0], "text": ["2", 0], "sampler": ["3", 0], **size}}
    p["10"] = {"class_type": "VBWanVAEDecode", "inputs": {"wan": ["1", 0], "latent": ["4", 0]}}
    p["11"] = {"class_type": "VBWanVAEEncode", "inputs": {"wan": ["1", 0], "images": ["10", 0]}}
    p["12"] = {"class_type": "VBWanV2V", "inputs": {"wan": ["1", 0], "text": ["2", 0], "latent": ["11", 0],
                                                    "denoise": 0.6, "sampler": ["3", 0]}}
    out["v2v"] = (_tail(p, "12"), lat, img)
    return out


def check(result, expected_latent, expected_image) -> list:
    """Problems found in an executor result of one of these workflows (empty list = pass)."""
    problems = []
    if result.status != "success":
        err = result.error or {}
        return [f"status {result.status}: {err.get('exception_message') or err}"]
    items = (result.outputs.get("9") or {}).get("vibeboard_inspect") or []
    got = {i["kind"]: i for i in items}
    for kind, want in (("LATENT", expected_latent), ("IMAGE", expected_image)):
        if kind not in got:
            problems.append(f"no {kind} reached the inspector")
        elif got[kind]["shape"] != want:
            problems.append(f"{kind} shape {got[kind]['shape']} != {want}")
        elif not got[kind]["finite"]:
            problems.append(f"{kind} has NaN/inf")
    if "IMAGE" in got and not (0.0 <= got["IMAGE"]["min"] <= got["IMAGE"]["max"] <= 1.0):
        problems.append("IMAGE values outside 0..1")
    return problems
