"""VFX Suite nodes: camera re-rendering (InfCam), its training-free preview, focus inspection, edits.

Thin: each node converts ComfyUI types and calls the mechanism in homography.py / infcam*.py /
focus_inspect.py / qwen_edit.py.
"""
from __future__ import annotations

import json
import os

import torch

from ..common.runtime import NodeInputError, models_directory, output_directory, unique_output_path

CATEGORY = "VibeBoard/VFX"
DTYPE_CHOICES = ["bf16", "fp16", "fp32"]


def model_path(node: str, input_name: str, value: str, must_be_dir: bool = False) -> str:
    """Resolve a models-folder relative path; a missing file is a NodeInputError naming the expected path."""
    value = (value or "").strip()
    if not value:
        raise NodeInputError(node, input_name, "empty path")
    path = value if os.path.isabs(value) else os.path.join(models_directory(), value)
    ok = os.path.isdir(path) if must_be_dir else os.path.exists(path)
    if not ok:
        raise NodeInputError(node, input_name, f"model not found: expected {'folder' if must_be_dir else 'file'} {path}")
    return path


def pick_device(choice: str = "auto") -> str:
    if choice != "auto":
        return choice
    return "cuda" if torch.cuda.is_available() else "cpu"


class VBInfCamLoader:
    DESCRIPTION = ("Load InfCam (Wan2.1-T2V-1.3B + InfCam camera blocks) and the Wan VAE / UMT5 text encoder it "
                   "needs. The checkpoint is InfCam's step35000 state dict converted once to .safetensors "
                   "(docs/vfx.md). If it carries only the InfCam additions, give the Wan 1.3B transformer too.")
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = ("VB_INFCAM",)
    RETURN_NAMES = ("infcam",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "checkpoint": ("STRING", {"default": "infcam/infcam_step35000.safetensors",
                                          "tooltip": "InfCam weights (.safetensors), relative to the models folder."}),
                "vae": ("STRING", {"default": "vae/wan_2.1_vae.safetensors", "tooltip": "Wan2.1 VAE file or diffusers folder."}),
                "text_encoder": ("STRING", {"default": "text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors",
                                            "tooltip": "UMT5-XXL encoder (ComfyUI single file or diffusers folder)."}),
                "tokenizer": ("STRING", {"default": "text_encoders/umt5-xxl-tokenizer",
                                         "tooltip": "Tokenizer folder (google/umt5-xxl)."}),
                "dtype": (DTYPE_CHOICES, {"default": "bf16", "tooltip": "Compute precision."}),
                "device": (["auto", "cuda", "cpu"], {"default": "auto", "tooltip": "Where to run."}),
            },
            "optional": {
                "base_transformer": ("STRING", {"default": "", "tooltip": "Wan2.1-T2V-1.3B transformer, only needed "
                                                "when the checkpoint has no base weights."}),
                "attention_head_dim": ("INT", {"default": 128, "min": 8, "max": 256,
                                               "tooltip": "Wan head size (128 for every released Wan)."}),
            },
        }

    def load(self, checkpoint, vae, text_encoder, tokenizer, dtype, device, base_transformer="", attention_head_dim=128):
        from ..models import loaders
        from .infcam import load_infcam
        from .infcam_sampler import InfCamHandle

        node = "InfCam Loader"
        ckpt = model_path(node, "checkpoint", checkpoint)
        base = None
        if base_transformer.strip():
            base = loaders.load_wan_transformer(model_path(node, "base_transformer", base_transformer), dtype)
        cdtype = loaders.compute_dtype(dtype)
        dev = pick_device(device)
        try:
            model = load_infcam(ckpt, attention_head_dim, base, cdtype)
        except ValueError as exc:
            raise NodeInputError(node, "checkpoint", str(exc)) from None
        handle = InfCamHandle(
            model=model.to(dev),
            vae=loaders.load_wan_vae(model_path(node, "vae", vae), "fp32" if dtype == "fp32" else "bf16").to(dev),
            text_encoder=loaders.load_umt5(model_path(node, "text_encoder", text_encoder), dtype).to(dev),
            tokenizer=loaders.load_tokenizer(model_path(node, "tokenizer", tokenizer, must_be_dir=True)),
            device=dev, dtype=cdtype)
        return (handle,)


class VBChangeCamera:
    DESCRIPTION = ("Change Camera (InfCam): re-render a source video along a new camera path. Rotation is given to "
                   "the model as an infinite homography of the first source frame; translation through the camera "
                   "embedding. One target focal length per shot (source focal × zoom_factor). Needs InfCam weights "
                   "(~1.3B Wan + additions); 480×832×81 frames is the trained size.")
    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("video",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "infcam": ("VB_INFCAM", {"tooltip": "From InfCam Loader."}),
                "source_video": ("IMAGE", {"tooltip": "Source frames (trimmed to 4k+1 frames, sides to ×16)."}),
                "camera_path": ("VB_CAMERA_PATH", {"tooltip": "Target camera, relative to the source's first frame."}),
                "prompt": ("STRING", {"multiline": True, "default": "", "tooltip": "What the video shows."}),
                "negative_prompt": ("STRING", {"multiline": True, "default": "",
                                               "tooltip": "Empty = Wan's standard negative prompt."}),
                "steps": ("INT", {"default": 50, "min": 1, "max": 200, "tooltip": "Sampling steps."}),
                "cfg": ("FLOAT", {"default": 5.0, "min": 1.0, "max": 20.0, "step": 0.1, "tooltip": "Guidance scale."}),
                "shift": ("FLOAT", {"default": 5.0, "min": 0.1, "max": 20.0, "step": 0.1, "tooltip": "Flow shift."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 2**63 - 1, "tooltip": "Noise seed."}),
                "zoom_factor": ("FLOAT", {"default": 1.0, "min": 0.25, "max": 4.0, "step": 0.05,
                                          "tooltip": "Target focal length ÷ source focal length."}),
            }
        }

    def run(self, infcam, source_video, camera_path, prompt, negative_prompt, steps, cfg, shift, seed, zoom_factor):
        from .infcam_sampler import change_camera

        try:
            video = change_camera(infcam, source_video, camera_path, prompt, negative_prompt, steps, cfg, shift,
                                  seed, zoom_factor)
        except ValueError as exc:
            raise NodeInputError("Change Camera (InfCam)", "source_video", str(exc)) from None
        return (video,)


class VBRotationPreview:
    DESCRIPTION = ("Training-free preview of a camera path: the source frames warped by the rotation-only "
                   "(infinite) homography of each target camera — what InfCam is conditioned on. Translation is "
                   "ignored (a homography cannot show parallax); black = outside the source view.")
    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES = ("IMAGE", "MASK")
    RETURN_NAMES = ("preview", "valid")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "source_video": ("IMAGE", {"tooltip": "Source frames (or one image)."}),
                "camera_path": ("VB_CAMERA_PATH", {"tooltip": "Target camera path (resampled to the frame count)."}),
                "source": (["first_frame", "per_frame"], {"default": "first_frame",
                                                          "tooltip": "first_frame: warp frame 0 to every camera (InfCam's "
                                                                     "conditioning); per_frame: warp frame t by camera t."}),
                "num_frames": ("INT", {"default": 0, "min": 0, "max": 4096,
                                       "tooltip": "Output frames (0 = the source's count; a still becomes a clip)."}),
            }
        }

    def run(self, source_video, camera_path, source, num_frames):
        from .homography import rotation_preview

        frames = source_video
        n = num_frames or frames.shape[0]
        if frames.shape[0] != n:
            idx = torch.linspace(0, frames.shape[0] - 1, n).round().long()
            frames = frames[idx]
        preview, valid = rotation_preview(frames, camera_path, source=source)
        return (preview, valid)


NODE_CLASS_MAPPINGS = {
    "VBInfCamLoader": VBInfCamLoader,
    "VBChangeCamera": VBChangeCamera,
    "VBRotationPreview": VBRotationPreview,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "VBInfCamLoader": "InfCam Loader (VibeBoard)",
    "VBChangeCamera": "Change Camera — InfCam (VibeBoard)",
    "VBRotationPreview": "Camera Rotation Preview (VibeBoard)",
}
