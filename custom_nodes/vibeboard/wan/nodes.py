"""Wan nodes (thin): loader → VB_WAN, text encode, T2V / I2V / V2V / VACE → LATENT, VAE encode/decode.

LATENT holds raw VAE latents `[B,16,T,H/8,W/8]` (ComfyUI's convention for Wan), IMAGE holds frames.
The mechanism is in handle.py / conditioning.py / sampler.py; these classes only convert and validate.
"""
from __future__ import annotations

import os

import torch

from ..common import runtime
from ..models import loaders, registry
from . import conditioning as C
from . import sampler as S
from .handle import load_wan

CATEGORY = "VibeBoard/Wan"
NONE = "none"
FROM_FOLDER = "(from diffusers folder)"
DTYPES = ["bf16", "fp16", "fp32", "fp8_e4m3fn"]
DEFAULT_NEGATIVE = ("blurry, low quality, worst quality, jpeg artifacts, static, still frame, distorted, "
                    "deformed, extra fingers, bad hands, bad face, watermark, subtitles, text")


def _models_list():
    files = [n for n in registry.choices("diffusion_models") if "flux" not in n.lower()]
    folders = ["diffusers/" + n for n in registry.list_folder("diffusers", patterns=(), dirs_too=True) if n != "."]
    return files + folders


def _registry_hint(name: str) -> str:
    return registry.pull_hint(name)


def _resolve(node: str, input_name: str, name: str, folder: str, prompt=None, class_type=None) -> str:
    requested = name
    if name.startswith("diffusers/"):
        folder, name = "diffusers", name[len("diffusers/"):]
    path = registry.find_file(name, folder)
    if path is None and prompt and class_type:  # inside ComfyUI: every missing file of the workflow at once
        from ..models import preflight
        preflight.raise_missing(class_type, input_name, requested, prompt, title=node)
    if path is None:
        dirs = registry.folder_dirs(folder)
        raise runtime.NodeInputError(node, input_name, f"'{name}' not found; expected at "
                                     f"{os.path.join(dirs[0], name)} (searched: {', '.join(dirs)})"
                                     f"{_registry_hint(name)}")
    return path


def _find_tokenizer(text_encoder_path: str):
    if os.path.isdir(text_encoder_path):
        return text_encoder_path
    for cand in (os.path.join(os.path.dirname(text_encoder_path), "umt5-xxl-tokenizer"),
                 registry.find_file("umt5-xxl-tokenizer", "text_encoders")):
        if cand and os.path.isdir(cand):
            return cand
    return None


class VBWanModelLoader:
    DESCRIPTION = ("Loads a Wan model family (DiT, VAE, UMT5 text encoder, optional CLIP vision and Wan2.2 "
                   "low-noise expert) from ComfyUI single files or a diffusers folder. The VRAM manager moves "
                   "parts on and off the GPU as they are needed. Needs weights: a Wan checkpoint set (vibeboard "
                   "models list / vibeboard models pull <id>).")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("VB_WAN",)
    RETURN_NAMES = ("wan",)
    OUTPUT_TOOLTIPS = ("the Wan model family (DiT, VAE, text encoder, CLIP vision when given)",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        vae = [FROM_FOLDER] + registry.choices("vae")
        te = [FROM_FOLDER] + registry.choices("text_encoders")
        return {"required": {
            "model": (_models_list(), {"tooltip": "Wan DiT: a file in models/diffusion_models or a diffusers "
                                                  "folder (models/diffusers/…)"}),
            "vae": (vae, {"tooltip": "Wan VAE file (models/vae), or take it from the diffusers folder"}),
            "text_encoder": (te, {"tooltip": "UMT5-XXL (models/text_encoders); the tokenizer is looked up in "
                                             "text_encoders/umt5-xxl-tokenizer"}),
            "dtype": (DTYPES, {"default": "bf16", "tooltip": "Weights/compute dtype. fp8 stores Linear weights "
                                                             "in fp8 (half the VRAM, slightly lossy)"}),
        }, "optional": {
            "clip_vision": ([NONE] + registry.choices("clip_vision"),
                            {"default": NONE, "tooltip": "CLIP ViT-H for Wan2.1 I2V (clip_vision_h.safetensors)"}),
            "model_2": ([NONE] + _models_list(), {"default": NONE, "tooltip": "Wan2.2 A14B low-noise expert"}),
        }, "hidden": {"prompt": "PROMPT"}}

    def load(self, model, vae, text_encoder, dtype="bf16", clip_vision=NONE, model_2=NONE, prompt=None):
        node = runtime.node_label(VBWanModelLoader)
        where = dict(prompt=prompt, class_type="VBWanModelLoader")
        path = _resolve(node, "model", model, "diffusion_models", **where)
        is_folder = os.path.isdir(path)
        if vae == FROM_FOLDER and not is_folder:
            raise runtime.NodeInputError(node, "vae", "pick a VAE file: the model is a single file")
        vae_path = path if vae == FROM_FOLDER else _resolve(node, "vae", vae, "vae", **where)
        te_path = path if text_encoder == FROM_FOLDER else _resolve(node, "text_encoder", text_encoder,
                                                                      "text_encoders", **where)
        if text_encoder == FROM_FOLDER and not is_folder:
            raise runtime.NodeInputError(node, "text_encoder", "pick a text encoder file: the model is a single file")
        tok = _find_tokenizer(te_path)
        if tok is None and loaders.tokenizer_from_checkpoint(te_path) is None:
            raise runtime.NodeInputError(node, "text_encoder", "the UMT5 tokenizer was not found (this file carries "
                                         "none); expected "
                                         f"{os.path.join(os.path.dirname(te_path), 'umt5-xxl-tokenizer')} — "
                                         "`vibeboard models pull umt5-tokenizer`")
        clip = None
        if clip_vision and clip_vision != NONE:
            clip = _resolve(node, "clip_vision", clip_vision, "clip_vision", **where)
        elif is_folder and os.path.isdir(os.path.join(path, "image_encoder")):
            clip = path
        second = _resolve(node, "model_2", model_2, "diffusion_models", **where) \
            if model_2 and model_2 != NONE else None
        handle = load_wan(path, vae_path, te_path, tok, clip, second, dtype=dtype)
        return (handle,)


class VBWanLoRA:
    DESCRIPTION = ("Adds a LoRA (diffusers/PEFT, kohya/ComfyUI or diffusion_model.* keys) with a strength. Needs "
                   "weights: the LoRA file and a Wan model from Wan Model Loader.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("VB_WAN",)
    RETURN_NAMES = ("wan",)
    OUTPUT_TOOLTIPS = ("a copy of the Wan model with the LoRA applied",)
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "wan": ("VB_WAN", {"tooltip": "Wan model from the loader"}),
            "lora_name": (registry.choices("loras") or ["none"], {"tooltip": "LoRA file in models/loras"}),
            "strength": ("FLOAT", {"default": 1.0, "min": -4.0, "max": 4.0, "step": 0.05,
                                   "tooltip": "0 leaves the model unchanged"}),
        }, "optional": {
            "expert": (["both", "high_noise", "low_noise"], {"default": "both",
                                                             "tooltip": "Wan2.2 A14B: which expert gets it"}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, lora_name):
        from ..models import preflight
        return preflight.validate_model_name("VBWanLoRA", "lora_name", lora_name)

    def apply(self, wan, lora_name, strength, expert="both"):
        from ..models import lora as lora_mod

        path = _resolve(runtime.node_label(VBWanLoRA), "lora_name", lora_name, "loras")
        part = {"both": None, "high_noise": "transformer", "low_noise": "transformer_2"}[expert]
        # Check now (names, shapes, format) so a LoRA that cannot apply is this node's error, not the sampler's.
        targets = [p for p in ("transformer", "transformer_2") if wan.has(p) and part in (None, p)]
        try:
            groups = lora_mod.cached_lora(path)
            for target in targets:
                lora_mod.check_fits(wan.module(target), groups, strict="any")
        except ValueError as exc:
            raise runtime.NodeInputError(runtime.node_label(VBWanLoRA), "lora_name", str(exc)) from None
        new = wan.with_parts()
        new.loras.append((path, float(strength), part))
        return (new,)


class VBWanTextEncode:
    DESCRIPTION = ("Encodes the prompt and negative prompt with UMT5 (padded to 512 tokens, as Wan expects). "
                   "Needs weights: the UMT5 text encoder from Wan Model Loader.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("VB_WAN_TEXT",)
    RETURN_NAMES = ("text",)
    OUTPUT_TOOLTIPS = ("UMT5 embeddings of the prompt and negative prompt",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "wan": ("VB_WAN", {"tooltip": "Wan model from the loader"}),
            "prompt": ("STRING", {"multiline": True, "default": "", "tooltip": "What the shot shows"}),
            "negative_prompt": ("STRING", {"multiline": True, "default": DEFAULT_NEGATIVE,
                                           "tooltip": "What to steer away from (used when CFG > 1)"}),
        }}

    def encode(self, wan, prompt, negative_prompt=""):
        embeds = C.encode_text(wan, [prompt, negative_prompt])
        return ({"prompt_embeds": embeds[:1], "negative_embeds": embeds[1:]},)


class VBWanSamplerSettings:
    DESCRIPTION = ("Sampling settings shared by the Wan generate nodes. Opt-in lossy speed: fp8 GEMMs (precision), "
                   "a step cache that skips DiT forwards (step_cache), and the lightx2v 4-step preset for "
                   "step-distilled LoRAs (CFG 1: one forward per step).")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("VB_WAN_SAMPLER",)
    RETURN_NAMES = ("sampler",)
    OUTPUT_TOOLTIPS = ("sampler settings for the Wan generate nodes",)
    FUNCTION = "make"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "steps": ("INT", {"default": 30, "min": 1, "max": 200, "tooltip": "Denoising steps"}),
            "cfg": ("FLOAT", {"default": 5.0, "min": 1.0, "max": 20.0, "step": 0.1,
                              "tooltip": "Classifier-free guidance (1 = off, one forward per step)"}),
            "shift": ("FLOAT", {"default": 5.0, "min": 0.5, "max": 20.0, "step": 0.1,
                                "tooltip": "Flow shift (Wan: 3 for 480p 1.3B, 5 default, 12 for 2.2 T2V)"}),
            "scheduler": (list(S.SCHEDULERS), {"default": "unipc", "tooltip": "Flow-matching solver (flow_euler: "
                                                                              "Euler on Wan's own sigmas, as "
                                                                              "DiffSynth/InfCam)"}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xffffffffffffffff, "control_after_generate": True,
                             "tooltip": "Noise seed"}),
        }, "optional": {
            "attention": (list(S.ATTENTION_CHOICES),
                          {"default": "auto", "tooltip": "SDPA backend; auto prefers cuDNN (fastest on H100). "
                                                         "triton: our lossless Hopper kernel for self-attention; "
                                                         "fp8 / int8: 8-bit SageAttention-style kernels (faster, "
                                                         "lossy ≈3e-2 / 1e-2 per attention). Need Triton + CUDA"}),
            "cfg_low_noise": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 20.0, "step": 0.1,
                                        "tooltip": "Wan2.2 A14B low-noise expert CFG (0 = same as cfg)"}),
            "compile": ("BOOLEAN", {"default": False, "tooltip": "torch.compile the DiT blocks (GPU; ~20 s "
                                                                 "once, then ~19 % faster steps)"}),
            "batch_cfg": ("BOOLEAN", {"default": True, "tooltip": "Prompt and negative prompt in one forward "
                                                                  "(same result, faster; off = two forwards, "
                                                                  "less memory)"}),
            "precision": (list(S.PRECISIONS), {"default": "bf16", "tooltip": "fp8: the DiT's attention/FFN "
                                                                           "matmuls in fp8 (Ada/Hopper GPUs; "
                                                                           "faster, slightly lossy: ≈1e-2 "
                                                                           "relative error per step)"}),
            "step_cache": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                     "tooltip": "Skip DiT forwards whose estimated change is below this "
                                                "(EasyCache-style; 0 = off, 0.05 mild, 0.1 ≈ 2× fewer forwards "
                                                "at 50 steps; lossy). First 20 % and last step always run"}),
            "preset": (["custom", "lightx2v 4-step"], {"default": "custom", "tooltip": "lightx2v 4-step: the "
                                                       "settings for step-distilled LoRAs (lightx2v / CausVid): "
                                                       "4 steps, CFG 1 (no negative pass), shift 5, flow_euler; "
                                                       "overrides steps, cfg, shift and scheduler"}),
        }}

    def make(self, steps, cfg, shift, scheduler, seed, attention="auto", cfg_low_noise=0.0, compile=False,
             batch_cfg=True, precision="bf16", step_cache=0.0, preset="custom"):
        if attention in S.KERNEL_ATTENTION:  # asked for explicitly: say now, not at the first step, if it can't run
            from .attention.configs import triton_available
            reason = triton_available()
            if reason:
                raise runtime.NodeInputError(runtime.node_label(self), "attention",
                                             f"{attention!r} needs Triton on a CUDA GPU: {reason}; use 'auto'")
        settings = S.SamplerSettings(steps=steps, cfg=cfg, shift=shift, scheduler=scheduler, seed=seed,
                                     attention=attention, cfg_2=cfg_low_noise or None, compile=bool(compile),
                                     batch_cfg=bool(batch_cfg))
        return (_lossy_options(settings, precision, step_cache, preset),)


def _lossy_options(settings, precision, step_cache, preset):
    """The opt-in speed options of the settings node (fp8 GEMMs, step cache, distilled-LoRA preset)."""
    node = runtime.node_label(VBWanSamplerSettings)
    if precision not in S.PRECISIONS:
        raise runtime.NodeInputError(node, "precision", f"{precision!r} is not one of {', '.join(S.PRECISIONS)}")
    if not 0.0 <= float(step_cache) <= 1.0:
        raise runtime.NodeInputError(node, "step_cache", f"{step_cache} is outside 0…1 (0 = off)")
    changes = dict(precision=precision, step_cache=float(step_cache))
    if preset == "lightx2v 4-step":
        changes.update(S.LIGHTX2V_4STEP)
    elif preset != "custom":
        raise runtime.NodeInputError(node, "preset", f"unknown preset {preset!r} (custom, lightx2v 4-step)")
    return settings.replace(**changes)


def video_size_inputs(length_default=81):
    """width / height / length widgets shared by every node that generates a Wan clip."""
    return {
        "width": ("INT", {"default": 832, "min": 16, "max": 4096, "step": 16, "tooltip": "Output width (px)"}),
        "height": ("INT", {"default": 480, "min": 16, "max": 4096, "step": 16, "tooltip": "Output height (px)"}),
        "length": ("INT", {"default": length_default, "min": 1, "max": 1025, "step": 4,
                           "tooltip": "Frames (4·k+1)"}),
    }


def _common_optional():
    return {"sampler": ("VB_WAN_SAMPLER", {"tooltip": "Sampler settings (defaults: 30 UniPC steps, CFG 5)"}),
            "preview": ("BOOLEAN", {"default": False, "tooltip": "Send a rough latent preview each step"})}


def _settings(wan, sampler):
    return S.settings_or_default(wan, sampler)


def _cond(text) -> C.WanConditioning:
    return C.WanConditioning(prompt_embeds=text["prompt_embeds"], negative_embeds=text.get("negative_embeds"))


class VBWanT2V:
    DESCRIPTION = ("Text to video: samples Wan latents from noise. Needs weights: a Wan model from Wan Model "
                   "Loader.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("raw Wan latents [B,C,T,H,W]; decode with Wan VAE Decode",)
    FUNCTION = "generate"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"wan": ("VB_WAN", {"tooltip": "Wan model"}),
                             "text": ("VB_WAN_TEXT", {"tooltip": "Encoded prompts"}), **video_size_inputs()},
                "optional": _common_optional()}

    def generate(self, wan, text, width, height, length, sampler=None, preview=False):
        C.check_size(runtime.node_label(VBWanT2V), length, height, width, wan)
        in_ch = wan.module("transformer").config.in_channels
        if in_ch != wan.latent_channels:  # an I2V DiT also wants mask + image channels this node has no input for
            raise runtime.NodeInputError(runtime.node_label(VBWanT2V), "wan",
                                         f"this model takes {in_ch} input channels, "
                                         f"text to video needs {wan.latent_channels}: load a T2V (or VACE/TI2V) "
                                         "model, or use Wan Image to Video")
        lat = S.sample(wan, _cond(text), _settings(wan, sampler), C.latent_shape(wan, length, height, width),
                       preview=preview)
        return ({"samples": lat},)


class VBWanI2V:
    DESCRIPTION = ("Image to video: the start image (and optionally an end image) is kept, the rest is generated. "
                   "Wan2.1 I2V also reads CLIP image tokens (load clip_vision). Needs weights: an I2V Wan model "
                   "from Wan Model Loader.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("raw Wan latents [B,C,T,H,W]; decode with Wan VAE Decode",)
    FUNCTION = "generate"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"wan": ("VB_WAN", {"tooltip": "Wan I2V model"}),
                             "text": ("VB_WAN_TEXT", {"tooltip": "Encoded prompts"}),
                             "start_image": ("IMAGE", {"tooltip": "First frame"}), **video_size_inputs()},
                "optional": {"end_image": ("IMAGE", {"tooltip": "Last frame (first+last frame mode)"}),
                             **_common_optional()}}

    def generate(self, wan, text, start_image, width, height, length, end_image=None, sampler=None, preview=False):
        node = runtime.node_label(VBWanI2V)
        C.check_size(node, length, height, width, wan)
        in_ch = wan.module("transformer").config.in_channels
        if wan.variant == "ti2v":  # Wan2.2 TI2V-5B: the first latent frame is the clean image, timestep 0
            cond = _cond(text)
            cond.clean_latents = C.first_frame_latents(wan, start_image, height, width)
            lat = S.sample(wan, cond, _settings(wan, sampler), C.latent_shape(wan, length, height, width),
                           preview=preview)
            return ({"samples": lat},)
        if in_ch != 36:
            raise runtime.NodeInputError(node, "wan", f"this model takes {in_ch} input channels; I2V needs an "
                                         "I2V model (36 channels), e.g. wan2.1_i2v_480p_14B")
        cond = _cond(text)
        if getattr(wan.module("transformer").config, "image_dim", None):
            if not wan.has("image_encoder"):
                raise runtime.NodeInputError(node, "wan", "Wan2.1 I2V needs CLIP vision: set clip_vision on "
                                             "the loader (clip_vision_h.safetensors)")
            imgs = start_image[:1] if end_image is None else torch.cat(
                [start_image[:1], C.resize_frames(end_image[:1], start_image.shape[1], start_image.shape[2])])
            cond.image_embeds = C.clip_image_tokens(wan, imgs)
        cond.concat_latents = C.i2v_concat(wan, length, height, width, start_image, end_image)
        lat = S.sample(wan, cond, _settings(wan, sampler), C.latent_shape(wan, length, height, width),
                       preview=preview)
        return ({"samples": lat},)


class VBWanV2V:
    DESCRIPTION = ("Video to video: re-noises the input latents to `denoise` and samples them again. Needs "
                   "weights: a Wan model from Wan Model Loader.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("raw Wan latents [B,C,T,H,W]; decode with Wan VAE Decode",)
    FUNCTION = "generate"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"wan": ("VB_WAN", {"tooltip": "Wan model"}),
                             "text": ("VB_WAN_TEXT", {"tooltip": "Encoded prompts"}),
                             "latent": ("LATENT", {"tooltip": "Input video latents (Wan VAE Encode)"}),
                             "denoise": ("FLOAT", {"default": 0.7, "min": 0.01, "max": 1.0, "step": 0.01,
                                                   "tooltip": "How much to change: 1 = ignore the input"})},
                "optional": _common_optional()}

    def generate(self, wan, text, latent, denoise, sampler=None, preview=False):
        init = latent["samples"]
        if init.ndim != 5 or init.shape[1] != wan.latent_channels:
            raise runtime.NodeInputError(runtime.node_label(VBWanV2V), "latent",
                                         f"expected [B,{wan.latent_channels},T,H,W] "
                                         f"(this model's VAE), got {tuple(init.shape)}")
        settings = _settings(wan, sampler).replace(denoise=float(denoise))
        lat = S.sample(wan, _cond(text), settings, tuple(init.shape), init_latents=init, preview=preview)
        return ({"samples": lat},)


class VBWanVACE:
    DESCRIPTION = ("VACE: generate with a control video (depth, pose, a source clip…), masks marking what to "
                   "generate (white) vs keep (black), and reference images for identity/style. Needs weights: a "
                   "VACE Wan model from Wan Model Loader.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("raw Wan latents [B,C,T,H,W]; decode with Wan VAE Decode",)
    FUNCTION = "generate"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"wan": ("VB_WAN", {"tooltip": "Wan VACE model"}),
                             "text": ("VB_WAN_TEXT", {"tooltip": "Encoded prompts"}), **video_size_inputs(),
                             "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 3.0, "step": 0.05,
                                                    "tooltip": "VACE context scale"})},
                "optional": {"control_video": ("IMAGE", {"tooltip": "Control frames"}),
                             "control_masks": ("MASK", {"tooltip": "1 = generate, 0 = keep the control pixels"}),
                             "reference_images": ("IMAGE", {"tooltip": "Reference images (identity, style)"}),
                             **_common_optional()}}

    def generate(self, wan, text, width, height, length, strength, control_video=None, control_masks=None,
                 reference_images=None, sampler=None, preview=False):
        node = runtime.node_label(VBWanVACE)
        C.check_size(node, length, height, width, wan)
        if not hasattr(wan.module("transformer"), "vace_blocks"):
            raise runtime.NodeInputError(node, "wan", "this is not a VACE model (load wan2.1_vace_*)")
        cond = _cond(text)
        cond.vace_context, cond.num_ref_frames = C.vace_context(wan, length, height, width, control_video,
                                                                control_masks, reference_images)
        cond.vace_scale = float(strength)
        lat = S.sample(wan, cond, _settings(wan, sampler), C.latent_shape(wan, length, height, width),
                       preview=preview)
        return ({"samples": lat},)


class VBWanVAEDecode:
    DESCRIPTION = ("Decodes Wan latents to frames (IMAGE batch, one image per frame). Needs weights: the Wan VAE "
                   "from Wan Model Loader.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    OUTPUT_TOOLTIPS = ("the frames, one IMAGE per frame, float 0..1",)
    FUNCTION = "decode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"wan": ("VB_WAN", {"tooltip": "Wan model (its VAE is used)"}),
                             "latent": ("LATENT", {"tooltip": "Raw Wan latents [B,16,T,h,w]"})},
                "optional": {"tiled": ("BOOLEAN", {"default": False, "tooltip": "Tile to save VRAM (720p+)"})}}

    def decode(self, wan, latent, tiled=False):
        samples = latent["samples"]
        if samples.ndim != 5 or samples.shape[1] != wan.latent_channels:
            raise runtime.NodeInputError(runtime.node_label(VBWanVAEDecode), "latent",
                                         f"expected [B,{wan.latent_channels},T,h,w], "
                                         f"got {tuple(samples.shape)}")
        return (C.vae_decode_images(wan, samples, tiled),)


class VBWanVAEEncode:
    DESCRIPTION = ("Encodes frames (IMAGE batch) to raw Wan latents. Needs weights: the Wan VAE from Wan Model "
                   "Loader.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("raw Wan latents [B,C,T,H,W]",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"wan": ("VB_WAN", {"tooltip": "Wan model (its VAE is used)"}),
                             "images": ("IMAGE", {"tooltip": "Frames [F,H,W,C]; F = 4·k+1 keeps every frame"})},
                "optional": {"tiled": ("BOOLEAN", {"default": False, "tooltip": "Tile to save VRAM (720p+)"})}}

    def encode(self, wan, images, tiled=False):
        ss = wan.scale_spatial * 2
        h, w = images.shape[1] // ss * ss, images.shape[2] // ss * ss
        if h == 0 or w == 0:
            raise runtime.NodeInputError(runtime.node_label(VBWanVAEEncode), "images", f"frames smaller than {ss}px")
        frames = images[:, :h, :w]
        keep = (frames.shape[0] - 1) // wan.scale_temporal * wan.scale_temporal + 1
        return ({"samples": C.vae_encode(wan, C.images_to_video(frames[:keep]), tiled)},)


class VBWanMemory:
    DESCRIPTION = ("How the Wan parts use VRAM: auto (resident when it fits the budget, block swap otherwise), or "
                   "force block swap with N transformer blocks kept on the GPU (the rest streamed from pinned RAM "
                   "with prefetch), and sequential offload for the text encoder. Returns a copy of the model with "
                   "this placement; the input model is unchanged. Needs weights: a Wan model from Wan Model "
                   "Loader (this node loads none itself).")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("VB_WAN",)
    RETURN_NAMES = ("wan",)
    OUTPUT_TOOLTIPS = ("a copy of the Wan model with this VRAM placement",)
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "wan": ("VB_WAN", {"tooltip": "Wan model from the loader"}),
            "transformer": (["auto", "resident", "block_swap"], {"default": "auto",
                                                                 "tooltip": "DiT placement"}),
            "blocks_on_gpu": ("INT", {"default": -1, "min": -1, "max": 64,
                                      "tooltip": "block_swap: blocks kept on the GPU (-1 = as many as fit)"}),
            "text_encoder": (["auto", "resident", "sequential"], {"default": "auto",
                                                                   "tooltip": "UMT5 placement (sequential: "
                                                                              "layer by layer, least VRAM)"}),
        }}

    def apply(self, wan, transformer="auto", blocks_on_gpu=-1, text_encoder="auto"):
        # A copy with its own placement (ModelPatcher.clone() discipline): the input handle, and every other
        # handle sharing these modules, keep theirs; the VRAM manager re-places a part when this copy runs it.
        modes = {"auto": "auto", "resident": "resident", "block_swap": "blockswap", "sequential": "sequential"}
        resident = None if blocks_on_gpu < 0 else int(blocks_on_gpu)
        new = wan.with_parts()
        for part, choice in (("transformer", transformer), ("transformer_2", transformer),
                             ("text_encoder", text_encoder)):
            if wan.has(part):
                new.placement[part] = (modes[choice], resident)
        return (new,)


class VBInspect:
    DESCRIPTION = "Shows the shape and value range of a LATENT and/or IMAGE (a quick check between nodes)."
    CATEGORY = CATEGORY
    RETURN_TYPES = ()
    FUNCTION = "inspect"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}, "optional": {"latent": ("LATENT", {"tooltip": "Latents to describe"}),
                                             "images": ("IMAGE", {"tooltip": "Frames to describe"})}}

    def inspect(self, latent=None, images=None):
        items = []
        for kind, t in (("LATENT", None if latent is None else latent["samples"]), ("IMAGE", images)):
            if t is not None:
                t = t.float()
                items.append({"kind": kind, "shape": list(t.shape), "min": round(t.min().item(), 4),
                              "max": round(t.max().item(), 4), "mean": round(t.mean().item(), 4),
                              "finite": bool(torch.isfinite(t).all())})
        text = ["{kind} {shape} min {min} max {max} mean {mean}".format(**i) for i in items]
        return {"ui": {"text": text, "vibeboard_inspect": items}, "result": ()}


NODE_CLASS_MAPPINGS = {
    "VBWanModelLoader": VBWanModelLoader, "VBWanLoRA": VBWanLoRA, "VBWanTextEncode": VBWanTextEncode,
    "VBWanSamplerSettings": VBWanSamplerSettings, "VBWanT2V": VBWanT2V, "VBWanI2V": VBWanI2V,
    "VBWanV2V": VBWanV2V, "VBWanVACE": VBWanVACE, "VBWanVAEDecode": VBWanVAEDecode,
    "VBWanVAEEncode": VBWanVAEEncode, "VBWanMemory": VBWanMemory, "VBInspect": VBInspect,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "VBWanModelLoader": "Wan Model Loader (VibeBoard)", "VBWanLoRA": "Wan LoRA (VibeBoard)",
    "VBWanTextEncode": "Wan Text Encode (VibeBoard)", "VBWanSamplerSettings": "Wan Sampler Settings (VibeBoard)",
    "VBWanT2V": "Wan Text to Video (VibeBoard)", "VBWanI2V": "Wan Image to Video (VibeBoard)",
    "VBWanV2V": "Wan Video to Video (VibeBoard)", "VBWanVACE": "Wan VACE (VibeBoard)",
    "VBWanVAEDecode": "Wan VAE Decode (VibeBoard)", "VBWanVAEEncode": "Wan VAE Encode (VibeBoard)",
    "VBWanMemory": "Wan Memory Settings (VibeBoard)", "VBInspect": "Inspect Latent/Image (VibeBoard)",
}

# Decode + MP4 in one node lives in its own module (this file stays under ~600 lines).
from . import video_nodes  # noqa: E402

NODE_CLASS_MAPPINGS.update(video_nodes.NODE_CLASS_MAPPINGS)
NODE_DISPLAY_NAME_MAPPINGS.update(video_nodes.NODE_DISPLAY_NAME_MAPPINGS)
