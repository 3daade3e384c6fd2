"""VFX Suite nodes: camera re-rendering (InfCam), its training-free preview, focus inspection, edits.

Thin: each node converts ComfyUI types and calls the mechanism in homography.py / infcam*.py /
focus_inspect.py / qwen_edit.py.
"""
from __future__ import annotations

import json
import os
import re

import torch

from ..common import grad, runtime
from ..common.runtime import NodeInputError, output_directory, unique_output_path
from ..media.files import atomic_output
from ..models.loaders import model_path, pick_device

CATEGORY = "VibeBoard/VFX"
DTYPE_CHOICES = ["bf16", "fp16", "fp32"]


class VBInfCamLoader:
    DESCRIPTION = ("Load InfCam (Wan2.1-T2V-1.3B + InfCam camera blocks) as a Wan model with the InfCam adapter: "
                   "use it with Wan Text Encode, Wan Sampler Settings and Change Camera. The checkpoint is "
                   "InfCam's step35000 state dict converted once to .safetensors (docs/vfx.md). With a Wan model "
                   "wired, its VAE and text encoder are used (and its DiT, unchanged and shared, when the "
                   "checkpoint carries only the InfCam additions). Needs weights: infcam, plus the Wan2.1 VAE and "
                   "UMT5 (vibeboard models pull <id>).")
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = ("VB_WAN",)
    RETURN_NAMES = ("infcam",)
    OUTPUT_TOOLTIPS = ("a Wan model with the InfCam adapter, for Change Camera",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "checkpoint": ("STRING", {"default": "InfCam/step35000.safetensors",
                                          "tooltip": "InfCam weights (.safetensors) in models/checkpoints: "
                                                     "`vibeboard models pull infcam` puts step35000.ckpt there; "
                                                     "convert it once (docs/vfx.md)."}),
                "vae": ("STRING", {"default": "vae/wan_2.1_vae.safetensors", "tooltip": "Wan2.1 VAE file or diffusers folder."}),
                "text_encoder": ("STRING", {"default": "text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors",
                                            "tooltip": "UMT5-XXL encoder (ComfyUI single file or diffusers folder)."}),
                "tokenizer": ("STRING", {"default": "text_encoders/umt5-xxl-tokenizer",
                                         "tooltip": "Tokenizer folder (google/umt5-xxl); not needed when the text "
                                                    "encoder file carries its tokenizer (ComfyUI's UMT5 files do)."}),
                "dtype": (DTYPE_CHOICES, {"default": "bf16", "tooltip": "Compute precision."}),
                "device": (["auto", "cuda", "cpu"], {"default": "auto", "tooltip": "Where to run."}),
            },
            "optional": {
                "wan": ("VB_WAN", {"tooltip": "A loaded Wan2.1-T2V-1.3B (Wan Model Loader): its VAE, text encoder and "
                                              "(for additions-only checkpoints) transformer are used; the file "
                                              "inputs above are then ignored."}),
                "base_transformer": ("STRING", {"default": "", "tooltip": "Wan2.1-T2V-1.3B transformer, only needed "
                                                "when the checkpoint has no base weights."}),
                "attention_head_dim": ("INT", {"default": 128, "min": 8, "max": 256,
                                               "tooltip": "Wan head size (128 for every released Wan)."}),
            },
            "hidden": {"prompt": "PROMPT"},
        }

    def load(self, checkpoint, vae, text_encoder, tokenizer, dtype, device, wan=None, base_transformer="",
             attention_head_dim=128, prompt=None):
        from ..models import loaders
        from ..wan.handle import WanHandle, load_parts
        from .infcam import load_infcam

        node = runtime.node_label(VBInfCamLoader)
        where = dict(class_type="VBInfCamLoader", prompt=prompt)
        ckpt = self._checkpoint(node, checkpoint, where)
        if not ckpt.endswith(".safetensors"):
            raise NodeInputError(node, "checkpoint", f"{ckpt}: only .safetensors is read (convert InfCam's .ckpt "
                                 "once; see docs/vfx.md)")
        from safetensors import safe_open
        with safe_open(ckpt, framework="pt") as fh:
            has_base = any(k.endswith("head.head.weight") or k == "proj_out.weight" for k in fh.keys())
        cdtype = loaders.compute_dtype(dtype)
        if wan is not None:
            handle = wan.with_parts()
            mgr = handle.manager
        else:
            mgr = _manager_for(pick_device(device))
            vae_dtype = "fp32" if dtype == "fp32" else "bf16"
            keys, tok = load_parts(mgr, vae=model_path(node, "vae", vae, folder="vae", **where), vae_dtype=vae_dtype,
                                   text_encoder=model_path(node, "text_encoder", text_encoder,
                                                           folder="text_encoders", **where),
                                   tokenizer_folder=_optional_folder(tokenizer))
            if tok is None:
                raise NodeInputError(node, "tokenizer", "the UMT5 tokenizer was not found (the text encoder file "
                                     "carries none): give the umt5-xxl tokenizer folder")
            handle = WanHandle(variant="t2v", keys=keys, tokenizer=tok, manager=mgr, dtype=cdtype)
        # One registration per file and dtype (a re-run reuses it); the DiT is the handle's own when the
        # checkpoint carries only InfCam's additions (shared and unchanged), else the checkpoint's or base file's.
        tag = f"{os.path.abspath(ckpt)}:{dtype}:{attention_head_dim}"
        base_key = None
        if has_base:
            base_key = f"infcam_base:{tag}"
        elif wan is None:
            if not base_transformer.strip():
                raise NodeInputError(node, "base_transformer", "this InfCam checkpoint has no base Wan weights: "
                                     "give the Wan2.1-T2V-1.3B transformer (or wire a Wan model)")
            base_file = model_path(node, "base_transformer", base_transformer, folder="diffusion_models", **where)
            base_key = f"infcam_base:{tag}:{os.path.abspath(base_file)}"
        adapter_key = f"infcam_adapter:{tag}"
        if adapter_key not in mgr.models or (base_key and base_key not in mgr.models):
            base = None
            try:
                with grad.outside_inference():  # kept by the VRAM manager beyond this node (common.grad)
                    if not has_base:
                        base = (wan.module("transformer") if wan is not None
                                else loaders.load_wan_transformer(base_file, dtype))
                    model = load_infcam(ckpt, attention_head_dim, base, cdtype)
            except ValueError as exc:
                raise NodeInputError(node, "checkpoint", str(exc)) from None
            if base_key:
                mgr.register(base_key, model.base)
            mgr.register(adapter_key, model.adapter(), mode="resident")
        if base_key:
            handle.keys["transformer"] = base_key
        handle.keys.pop("transformer_2", None)
        handle.boundary_ratio = None
        handle.keys["infcam"] = adapter_key
        handle.adapter = "infcam"
        return (handle,)

    @staticmethod
    def _checkpoint(node, checkpoint, where):
        """The converted checkpoint; if only upstream's pickled .ckpt is there, say how to convert it."""
        from ..models import registry

        stem = os.path.splitext(checkpoint.strip())[0]
        found = registry.resolve(checkpoint, "checkpoints")
        pickled = registry.resolve(stem + ".ckpt", "checkpoints")
        if found is None and pickled is not None:
            raise NodeInputError(node, "checkpoint", f"found InfCam's pickled release {pickled}; VibeBoard never "
                                 "unpickles. Convert it once on a trusted machine: state = torch.load(path, "
                                 "map_location='cpu', weights_only=True) (its 'state_dict' if nested), then "
                                 f"safetensors.torch.save_file(state, '{os.path.splitext(pickled)[0]}.safetensors')")
        return model_path(node, "checkpoint", checkpoint, **where)


def _optional_folder(value: str):
    """The tokenizer folder if it exists (a text-encoder file that embeds its tokenizer needs none)."""
    from ..models import registry
    value = (value or "").strip()
    if not value:
        return None
    try:
        path = registry.resolve(os.path.expanduser(value), "text_encoders")
    except ValueError:
        return None
    return path if path and os.path.isdir(path) else None


def _manager_for(device: str):
    from ..models import vram
    shared = vram.manager()
    return shared if torch.device(device).type == shared.device.type else vram.VramManager(device=device)


class VBChangeCamera:
    DESCRIPTION = ("Change Camera (InfCam): re-render a source video along a new camera path. Rotation is given to "
                   "the model as an infinite homography of the first source frame; translation through the camera "
                   "embedding. One target focal length per shot (source focal × zoom_factor). Takes the standard "
                   "Wan text and sampler inputs (unwired sampler: InfCam's 50 Euler steps, CFG 5, shift 5). Needs "
                   "InfCam weights (~1.3B Wan + additions); 480×832×81 frames is the trained size.")
    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("video",)
    OUTPUT_TOOLTIPS = ("the re-rendered video frames, float 0..1",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "infcam": ("VB_WAN", {"tooltip": "From InfCam Loader (a Wan model with the InfCam adapter)."}),
                "text": ("VB_WAN_TEXT", {"tooltip": "Wan Text Encode of the prompt (and negative prompt) with the "
                                                    "InfCam model."}),
                "source_video": ("IMAGE", {"tooltip": "Source frames (trimmed to 4k+1 frames, sides to ×16)."}),
                "camera_path": ("VB_CAMERA_PATH", {"tooltip": "Target camera, relative to the source's first frame."}),
                "zoom_factor": ("FLOAT", {"default": 1.0, "min": 0.25, "max": 4.0, "step": 0.05,
                                          "tooltip": "Target focal length ÷ source focal length."}),
            },
            "optional": {
                "sampler": ("VB_WAN_SAMPLER", {"tooltip": "Wan Sampler Settings (steps, CFG, shift, scheduler, seed…)."}),
                "translation_scale": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 100.0, "step": 0.05,
                                                "tooltip": "Multiplies the path's camera translation before it "
                                                           "reaches the model (scene units → the model's)."}),
            },
        }

    def run(self, infcam, text, source_video, camera_path, zoom_factor, sampler=None, translation_scale=1.0):
        from ..wan import conditioning as C
        from ..wan import sampler as S
        from .infcam_conditioning import DEFAULTS, infcam_conditioning

        node = runtime.node_label(VBChangeCamera)
        if getattr(infcam, "adapter", None) != "infcam":
            raise NodeInputError(node, "infcam", "this Wan model has no InfCam adapter: load it with InfCam Loader")
        try:
            cond, shape = infcam_conditioning(infcam, text, source_video, camera_path, zoom_factor, translation_scale)
        except ValueError as exc:
            raise NodeInputError(node, "source_video", str(exc)) from None
        raw = S.sample(infcam, cond, S.settings_or_default(infcam, sampler, **DEFAULTS), shape)
        return (C.video_to_images(C.vae_decode(infcam, raw)),)


class VBRotationPreview:
    DESCRIPTION = ("Training-free preview of a camera path: the source frames warped by the rotation-only "
                   "(infinite) homography of each target camera — what InfCam is conditioned on. Translation is "
                   "ignored (a homography cannot show parallax); black = outside the source view.")
    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES = ("IMAGE", "MASK")
    RETURN_NAMES = ("preview", "valid")
    OUTPUT_TOOLTIPS = ("source frames warped to each target camera", "1 where the source view covers the pixel")

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

        from ..common import budget
        frames = source_video
        n = num_frames or frames.shape[0]
        budget.check(runtime.node_label(VBRotationPreview), "num_frames", (n, frames.shape[1], frames.shape[2], 6),
                     "the resampled frames and their preview")
        if frames.shape[0] != n:
            idx = torch.linspace(0, frames.shape[0] - 1, n).round().long()
            frames = frames[idx]
        preview, valid = rotation_preview(frames, camera_path, source=source)
        return (preview, valid)


class VBFocusInspect:
    DESCRIPTION = ("Focus inspection for Dailies (the measurable half of DiffCamera-style 'Fix Focus'; DiffCamera "
                   "has no public code): per-tile blur in pixels (re-blur method), a sharpness map, the focal plane "
                   "fitted from a depth map, and per-shot warnings (soft subject, front/back focus, all soft, "
                   "focus hunting) written as JSON.")
    CATEGORY = CATEGORY
    FUNCTION = "run"
    OUTPUT_NODE = True
    RETURN_TYPES = ("MASK", "STRING")
    RETURN_NAMES = ("focus_map", "report_json")
    OUTPUT_TOOLTIPS = ("sharpness per pixel, 1 = sharp (tile estimates upsampled)",
                       "JSON: focal plane and focus warnings")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "A shot's frames (or one image)."}),
                "shot_name": ("STRING", {"default": "shot", "tooltip": "Name used in the report."}),
                "tile": ("INT", {"default": 32, "min": 8, "max": 256, "tooltip": "Analysis tile size (source pixels)."}),
                "soft_px": ("FLOAT", {"default": 2.0, "min": 0.25, "max": 50.0, "step": 0.25,
                                      "tooltip": "Subject blur (Gaussian σ, source pixels) above which a frame warns."}),
                "save_report": ("BOOLEAN", {"default": True, "tooltip": "Write the JSON report to the output folder."}),
            },
            "optional": {
                "depth": ("MASK", {"tooltip": "Depth map (Optics Engine depth) for the focal-plane estimate."}),
                "depth_convention": (["metric", "disparity"], {"default": "metric",
                                                               "tooltip": "metric: bigger = farther; disparity: bigger = nearer."}),
                "subject_mask": ("MASK", {"tooltip": "Where the subject is (default: the centre third)."}),
            },
        }

    def run(self, images, shot_name, tile, soft_px, save_report, depth=None, depth_convention="metric",
            subject_mask=None):
        from .focus_inspect import focus_map, inspect_shot

        inv = None
        if depth is not None:
            d = depth.float()
            if d.dim() == 2:  # a single [H, W] mask
                d = d[None]
            if depth_convention == "metric":
                inv = torch.where(torch.isfinite(d) & (d > 0), 1.0 / d.clamp(min=1e-3), torch.zeros_like(d))
            else:
                inv = d.clamp(min=0) / d.max().clamp(min=1e-12)
            if inv.shape[-2:] != images.shape[1:3]:
                inv = torch.nn.functional.interpolate(inv[:, None], size=images.shape[1:3], mode="bilinear",
                                                      align_corners=False)[:, 0]
        if subject_mask is not None and subject_mask.dim() == 2:
            subject_mask = subject_mask[None]
        if subject_mask is not None and subject_mask.shape[-2:] != images.shape[1:3]:
            subject_mask = torch.nn.functional.interpolate(subject_mask[:, None].float(), size=images.shape[1:3],
                                                           mode="bilinear", align_corners=False)[:, 0]
        report = inspect_shot(images, subject_mask, inv, tile, soft_px, shot_name)
        text = json.dumps(report, indent=1)
        fmap = focus_map(images, tile)
        ui = {}
        if save_report:
            # the shot name is free text: one file name in dailies/, never a sub-folder or a way out of it
            safe_name = re.sub(r"[^\w-]+", "_", shot_name).strip("_") or "shot"
            path, subfolder, name = unique_output_path(output_directory(), f"vibeboard/dailies/focus_{safe_name[:100]}",
                                                       "json", runtime.node_label(VBFocusInspect), "shot_name")
            with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
                fh.write(text)
            ui["files"] = [{"filename": name, "subfolder": subfolder, "type": "output"}]
        ui["text"] = [f"{shot_name}: {len(report['warnings'])} focus warning(s), "
                      f"{report['in_focus_fraction'] * 100:.0f}% of frames sharp on the subject"]
        return {"ui": ui, "result": (fmap, text)}


class VBFixFocus:
    DESCRIPTION = ("Fix Focus. DiffCamera (arbitrary refocusing) has no public code or weights, so this node "
                   "does NOT run DiffCamera: it runs GenFocus' DeblurNet to recover an all-in-focus frame. To "
                   "choose a new focal plane, feed the result to GenFocus Bokeh with a defocus map.")
    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("all_in_focus",)
    OUTPUT_TOOLTIPS = ("the all-in-focus frames, float 0..1",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "genfocus": ("VB_GENFOCUS", {"tooltip": "From GenFocus Loader (DeblurNet LoRA)."}),
            "image": ("IMAGE", {"tooltip": "Frame(s) to fix; each runs separately."}),
            "steps": ("INT", {"default": 28, "min": 1, "max": 100, "tooltip": "Sampling steps."}),
            "seed": ("INT", {"default": 42, "min": 0, "max": 2**63 - 1, "tooltip": "Noise seed."}),
            "max_side": ("INT", {"default": 1024, "min": 64, "max": 4096, "step": 16, "tooltip": "Longest side."}),
        }}

    def run(self, genfocus, image, steps, seed, max_side):
        from ..optics_learned.nodes import VBGenFocusDeblur

        outs = [VBGenFocusDeblur().run(genfocus, image[i:i + 1], steps, 3.5, seed, max_side)[0]
                for i in range(image.shape[0])]
        return (torch.cat(outs),)


class VBQwenEditLoader:
    DESCRIPTION = ("Load Qwen-Image-Edit (2509/2511, diffusers QwenImageEditPlusPipeline) from a diffusers "
                   "folder; optionally take the transformer and/or VAE from ComfyUI single files (fp8-scaled "
                   "files are dequantised). The text encoder / processor always come from the folder. Needs "
                   "weights: qwen-image-edit (vibeboard models pull qwen-image-edit).")
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = ("VB_QWEN_EDIT",)
    RETURN_NAMES = ("qwen_edit",)
    OUTPUT_TOOLTIPS = ("the Qwen-Image-Edit pipeline, for Edit Shirt",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "folder": ("STRING", {"default": "diffusers/Qwen-Image-Edit-2509", "tooltip": "diffusers-layout folder "
                                  "(models/diffusers/…): Qwen-Image-Edit-2509 or -2511."}),
            "transformer_file": ("STRING", {"default": "", "tooltip": "Optional ComfyUI transformer file (models/"
                                            "diffusion_models/…, e.g. qwen_image_edit_2511_bf16.safetensors)."}),
            "vae_file": ("STRING", {"default": "", "tooltip": "Optional ComfyUI VAE file (vae/qwen_image_vae.safetensors)."}),
            "dtype": (DTYPE_CHOICES, {"default": "bf16", "tooltip": "Compute precision."}),
            "device": (["auto", "cuda", "cpu"], {"default": "auto", "tooltip": "Where to run."}),
        }, "optional": {
            "variant": (["auto", "2509", "2511"], {"default": "auto", "tooltip": "Which release the transformer "
                        "file is. 2511 runs with zero_cond_t (reference-image tokens at timestep 0), which nothing in "
                        "the weights reveals: auto reads '2511' / '2509' in the file name, else the folder's config."}),
        }, "hidden": {"prompt": "PROMPT"}}

    def load(self, folder, transformer_file, vae_file, dtype, device, variant="auto", prompt=None):
        from ..models.loaders import compute_dtype
        from .qwen_edit import load_pipeline

        node = runtime.node_label(VBQwenEditLoader)
        where = dict(class_type="VBQwenEditLoader", prompt=prompt)
        path = model_path(node, "folder", folder, must_be_dir=True, folder="diffusers", **where)
        tf = model_path(node, "transformer_file", transformer_file, folder="diffusion_models", **where) \
            if transformer_file.strip() else ""
        vf = model_path(node, "vae_file", vae_file, folder="vae", **where) if vae_file.strip() else ""
        try:
            pipe = load_pipeline(path, tf, vf, compute_dtype(dtype), variant=variant)
        except ValueError as exc:
            raise NodeInputError(node, "transformer_file" if tf else "folder", str(exc)) from None
        return (pipe.to(pick_device(device)),)


class VBQwenEdit:
    DESCRIPTION = ("Edit Shirt (Qwen-Image-Edit): change an image by instruction, e.g. 'make his shirt the red "
                   "flannel from picture 2'. Up to two reference images (Picture 2, 3). The optional mask is "
                   "applied after the edit (the model itself takes no mask): outside it the original is kept. "
                   "Needs weights: the pipeline from Qwen-Image-Edit Loader.")
    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)
    OUTPUT_TOOLTIPS = ("the edited image, float 0..1",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "qwen_edit": ("VB_QWEN_EDIT", {"tooltip": "From Qwen Edit Loader."}),
                "image": ("IMAGE", {"tooltip": "Image to edit (Picture 1); each image of a batch is edited."}),
                "instruction": ("STRING", {"multiline": True, "default": "Change the shirt to a red flannel shirt.",
                                           "tooltip": "What to change."}),
                "steps": ("INT", {"default": 40, "min": 1, "max": 100, "tooltip": "Sampling steps."}),
                "true_cfg": ("FLOAT", {"default": 4.0, "min": 1.0, "max": 20.0, "step": 0.1, "tooltip": "True CFG scale."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 2**63 - 1, "tooltip": "Noise seed."}),
            },
            "optional": {
                "mask": ("MASK", {"tooltip": "Only this region may change (composited after the edit)."}),
                "reference_1": ("IMAGE", {"tooltip": "Picture 2 (e.g. the garment)."}),
                "reference_2": ("IMAGE", {"tooltip": "Picture 3."}),
                "negative_prompt": ("STRING", {"default": " ", "tooltip": "Negative prompt for true CFG."}),
                "feather_px": ("FLOAT", {"default": 4.0, "min": 0.0, "max": 64.0, "tooltip": "Mask edge softness."}),
                "megapixels": ("FLOAT", {"default": 1.0, "min": 0.01, "max": 4.0, "step": 0.05,
                                         "tooltip": "Size of the edit in megapixels (×1024², Picture 1's aspect, "
                                                    "multiples of 32). With a mask the edit is composited back "
                                                    "at the input size."}),
            },
        }

    def run(self, qwen_edit, image, instruction, steps, true_cfg, seed, mask=None, reference_1=None,
            reference_2=None, negative_prompt=" ", feather_px=4.0, megapixels=1.0):
        from .qwen_edit import edit

        if not instruction.strip():
            raise NodeInputError(runtime.node_label(VBQwenEdit), "instruction", "empty instruction")
        refs = [r[0] for r in (reference_1, reference_2) if r is not None]
        if mask is not None and mask.dim() == 2:  # one [H, W] mask for every image
            mask = mask[None]
        outs = []
        for i in range(image.shape[0]):
            m = None if mask is None else mask[min(i, mask.shape[0] - 1):][:1]
            outs.append(edit(qwen_edit, [image[i]] + refs, instruction, negative_prompt, steps, true_cfg, seed, m,
                             feather_px, megapixels))
        return (torch.cat(outs),)


NODE_CLASS_MAPPINGS = {
    "VBQwenEditLoader": VBQwenEditLoader,
    "VBQwenEdit": VBQwenEdit,
    "VBFocusInspect": VBFocusInspect,
    "VBFixFocus": VBFixFocus,
    "VBInfCamLoader": VBInfCamLoader,
    "VBChangeCamera": VBChangeCamera,
    "VBRotationPreview": VBRotationPreview,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "VBQwenEditLoader": "Qwen Edit Loader (VibeBoard)",
    "VBQwenEdit": "Edit Shirt — Qwen-Image-Edit (VibeBoard)",
    "VBFocusInspect": "Focus Inspect — Dailies (VibeBoard)",
    "VBFixFocus": "Fix Focus — via GenFocus Deblur (VibeBoard)",
    "VBInfCamLoader": "InfCam Loader (VibeBoard)",
    "VBChangeCamera": "Change Camera — InfCam (VibeBoard)",
    "VBRotationPreview": "Camera Rotation Preview (VibeBoard)",
}
