"""Self-test material: tiny models in the published layouts + one API-format workflow per Wan mode and per
Wan-based research model (FlashPortrait, the InfiniteTalk audio talking head).

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
    paths.update(_prepare_foundry(models_dir, input_dir, paths))
    return paths


# ---- Character Foundry: the Wan-based performance models ----------------------------------------------------------
DRIVER_FRAMES, DRIVER_FPS = 12, 24          # FlashPortrait's driving video (0.5 s, rendered at 24 fps)
SPEECH_SECONDS, TALK_FPS = 1.0, 8.0         # the talking head's speech (rendered at 8 fps: 8 frames, 2 segments)


def missing_extras() -> dict:
    """{workflow: why it cannot run here}: FlashPortrait's face models are ONNX (the `foundry` extra)."""
    import importlib.util
    if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None:
        return {"flashportrait": "needs onnx + onnxruntime: pip install vibeboard[foundry]"}
    return {}


def _clip_with_audio(path: str, frames: int, fps: float, seconds: float, seed: int) -> str:
    """A tiny MP4 with random frames and a voiced-like tone under them (AAC 48 kHz)."""
    from ..media.video import write_video
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 48000)) / 48000
    tone = (0.3 * np.sin(2 * np.pi * 180 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)))[None].astype(np.float32)
    write_video(path, rng.random((frames, HEIGHT, WIDTH, 3), dtype=np.float32), fps, audio=(tone, 48000))
    return path


def _prepare_foundry(models_dir: str, input_dir: str, paths: dict) -> dict:
    """FlashPortrait's release folder, the InfiniteTalk adapter + chinese-wav2vec2-base where `vibeboard models
    pull` puts them, and the driving video / speech clip in the input folder."""
    from ..foundry import tiny_release
    from .loaders import load_wan_transformer
    out = {}
    i2v_config = load_wan_transformer(paths["i2v"], "fp32").config
    out["infinitetalk"] = tiny_release.write_infinitetalk(
        os.path.join(models_dir, "diffusion_models", "InfiniteTalk", "single", "infinitetalk.safetensors"), i2v_config)
    out["wav2vec"] = tiny_release.write_wav2vec(os.path.join(models_dir, "checkpoints", "chinese-wav2vec2-base"))
    out["speech"] = _clip_with_audio(os.path.join(input_dir, "selftest_speech.mp4"), int(SPEECH_SECONDS * TALK_FPS),
                                     TALK_FPS, SPEECH_SECONDS, 1)
    if "flashportrait" not in missing_extras():
        tiny_release.write_flashportrait(os.path.join(models_dir, "checkpoints", "FlashPortrait"))
        out["driver"] = _clip_with_audio(os.path.join(input_dir, "selftest_driver.mp4"), DRIVER_FRAMES, DRIVER_FPS,
                                         DRIVER_FRAMES / DRIVER_FPS, 2)
    return out


def _foundry_workflows() -> dict:
    i2v = "wan2.1_i2v_480p_14B_bf16.safetensors"
    out = {}
    p = _base(i2v, clip="clip_vision_h.safetensors")
    p["6"] = {"class_type": "LoadImage", "inputs": {"image": "ref.png"}}
    p["4"] = {"class_type": "VBLoadVideo", "inputs": {
        "video": "selftest_speech.mp4", "frame_load_cap": 0, "skip_first_frames": 0, "select_every_nth": 1,
        "force_rate": 0.0, "custom_width": 0, "custom_height": 0, "start_time": 0.0}}
    p["5"] = {"class_type": "VBTalkingHead", "inputs": {
        "wan": ["1", 0], "text": ["2", 0], "portrait": ["6", 0], "speech": ["4", 1],
        "adapter": "InfiniteTalk/single/infinitetalk.safetensors", "wav2vec": "chinese-wav2vec2-base",
        "width": WIDTH, "height": HEIGHT, "segment_frames": 5, "continuation": "last frame (MultiTalk)",
        "fps": TALK_FPS, "steps": 2, "shift": 7.0, "text_cfg": 5.0, "audio_cfg": 4.0, "seed": 1}}
    p["9"] = {"class_type": "VBInspect", "inputs": {"images": ["5", 0]}}
    out["talking_head_infinitetalk"] = (p, None, [round(SPEECH_SECONDS * TALK_FPS), HEIGHT, WIDTH, 3])

    p = _base(i2v, clip="clip_vision_h.safetensors")
    p["6"] = {"class_type": "LoadImage", "inputs": {"image": "ref.png"}}
    p["5"] = {"class_type": "VBFlashPortrait", "inputs": {
        "folder": "checkpoints/FlashPortrait", "reference": ["6", 0],
        "driving_video": "../input/selftest_driver.mp4",     # output-relative (the input folder is its sibling)
        "prompt": "a person talking", "fps": float(DRIVER_FPS), "steps": 2, "text_cfg": 1.0, "emo_cfg": 4.0,
        "context_size": 2, "context_overlap": 1, "memory_mode": "model_cpu_offload", "seed": 0, "wan": ["1", 0]}}
    p["9"] = {"class_type": "VBInspect", "inputs": {"images": ["5", 0]}}
    out["flashportrait"] = (p, None, [DRIVER_FRAMES, HEIGHT, WIDTH, 3])
    for name in missing_extras():
        out.pop(name, None)
    return out


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
    out.update(_foundry_workflows())
    return out


def check(result, expected_latent, expected_image) -> list:
    """Problems found in an executor result of one of these workflows (empty list = pass); an expected shape of
    None: that kind is not produced (the performance nodes give frames only)."""
    problems = []
    if result.status != "success":
        err = result.error or {}
        return [f"status {result.status}: {err.get('exception_message') or err}"]
    items = (result.outputs.get("9") or {}).get("vibeboard_inspect") or []
    got = {i["kind"]: i for i in items}
    for kind, want in (("LATENT", expected_latent), ("IMAGE", expected_image)):
        if want is None:
            continue
        if kind not in got:
            problems.append(f"no {kind} reached the inspector")
        elif got[kind]["shape"] != want:
            problems.append(f"{kind} shape {got[kind]['shape']} != {want}")
        elif not got[kind]["finite"]:
            problems.append(f"{kind} has NaN/inf")
    if "IMAGE" in got and not (0.0 <= got["IMAGE"]["min"] <= got["IMAGE"]["max"] <= 1.0):
        problems.append("IMAGE values outside 0..1")
    return problems
