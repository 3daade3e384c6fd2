"""Block Scene nodes: VB_BOXES, box region generation with regional prompts, HiDream ReCo edits, keyframe montage."""
from __future__ import annotations

import os

import torch

from ..common import runtime
from . import boxes as boxes_mod
from ..wan import conditioning as C
from ..wan import sampler as S
from . import keyframes_montage, reco
from ..wan.nodes import video_size_inputs
from .node_utils import CATEGORY, file_entry, input_file, lora_names, model_folder

BOXES_TIP = "Boxes of one shot (label + prompt each, optionally keyframed)"


def _frames_to(video: torch.Tensor, length: int, height: int, width: int) -> torch.Tensor:
    """IMAGE -> exactly `length` frames (last frame held) at the size, as [1, 3, F, H, W] -1..1."""
    if video.shape[0] < length:
        video = torch.cat([video, video[-1:].expand(length - video.shape[0], -1, -1, -1)])
    return C.images_to_video(C.resize_bicubic(video[:length], height, width))


class VBBoxesLoad:
    DESCRIPTION = ("Reads a blocking file (JSON: per-shot boxes with label, prompt and optional keyframes; see "
                   "docs/shots.md) or inline JSON, e.g. the JSON output of Boxes (Draw), as VB_BOXES for one shot.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("VB_BOXES", "INT")
    RETURN_NAMES = ("boxes", "count")
    OUTPUT_TOOLTIPS = ("the shot's boxes (labels, prompts, keyframes)", "number of boxes")
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "blocking": ("STRING", {"default": "blocking.json", "multiline": True,
                                    "tooltip": "A .json file in the input folder (or absolute), or the JSON itself"}),
            "shot": ("STRING", {"default": "", "tooltip": "Shot key in the file (empty = the first shot)"}),
        }}

    @classmethod
    def IS_CHANGED(cls, blocking, shot=""):
        text = blocking.strip()
        if text.startswith("{") or text.startswith("["):
            return text
        try:  # the same confinement as load(): IS_CHANGED must not probe files the node may not read
            path = runtime.user_path(runtime.node_label(VBBoxesLoad), "blocking", text, runtime.input_directory())
        except runtime.NodeInputError:
            return text
        return os.path.getmtime(path) if os.path.isfile(path) else text

    def load(self, blocking, shot=""):
        node = runtime.node_label(VBBoxesLoad)
        text = blocking.strip()
        try:
            if text.startswith("{") or text.startswith("["):
                boxset = boxes_mod.parse_boxes(text, shot)
            else:
                boxset = boxes_mod.load_boxes(input_file(node, "blocking", text), shot)
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:  # e.g. a box that is a list
            raise runtime.NodeInputError(node, "blocking", str(exc)) from None
        return (boxset, len(boxset))


class VBBoxesSave:
    DESCRIPTION = "Writes VB_BOXES as a blocking JSON file in the output folder."
    CATEGORY = CATEGORY
    RETURN_TYPES = ()
    FUNCTION = "save"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"boxes": ("VB_BOXES", {"tooltip": BOXES_TIP}),
                             "filename_prefix": ("STRING", {"default": "vibeboard/blocking",
                                                            "tooltip": "Output name prefix"})}}

    def save(self, boxes, filename_prefix):
        from ..media.files import atomic_output
        path, _, _ = runtime.unique_output_path(runtime.output_directory(), filename_prefix, "json",
                                                runtime.node_label(VBBoxesSave))
        with atomic_output(path) as tmp:  # a failed write leaves no empty placeholder behind
            boxes_mod.save_boxes(boxes, tmp)
        return {"ui": {"files": [file_entry(path)]}, "result": ()}


class VBBoxesToMask:
    DESCRIPTION = "Per-frame masks of the boxes (union; keyframed boxes interpolated per frame)."
    CATEGORY = CATEGORY
    RETURN_TYPES = ("MASK",)
    RETURN_NAMES = ("mask",)
    OUTPUT_TOOLTIPS = ("per-frame mask, 1 inside any box",)
    FUNCTION = "mask"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"boxes": ("VB_BOXES", {"tooltip": BOXES_TIP}), **video_size_inputs()}}

    def mask(self, boxes, width, height, length):
        return (boxes_mod.union(boxes_mod.pixel_masks(boxes, length, height, width)),)


class VBBoxRegionGenerate:
    DESCRIPTION = ("Block Scene: generates only inside the boxes over a background plate. Outside every box the "
                   "plate latents are re-imposed each step and composited at the end, so nothing there changes; "
                   "each box's prompt only steers tokens inside its box (masked cross-attention, training-free). "
                   "VACE models also get the plate as VACE hints. Needs weights: a Wan model from Wan Model "
                   "Loader (a VACE model for the plate hints).")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("LATENT", "MASK")
    RETURN_NAMES = ("latent", "mask")
    OUTPUT_TOOLTIPS = ("Wan latents, generated inside the boxes only", "the union of the boxes per frame")
    FUNCTION = "generate"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "wan": ("VB_WAN", {"tooltip": "Wan model (VACE best; T2V/I2V work as latent inpainting)"}),
            "text": ("VB_WAN_TEXT", {"tooltip": "Global prompt (used outside the boxes and for empty box prompts)"}),
            "boxes": ("VB_BOXES", {"tooltip": BOXES_TIP}),
            "plate": ("IMAGE", {"tooltip": "Background plate: video frames or one still (held)"}),
            **video_size_inputs(),
        }, "optional": {
            "sampler": ("VB_WAN_SAMPLER", {"tooltip": "Sampler settings"}),
            "regional_prompts": ("BOOLEAN", {"default": True, "tooltip": "Each box's prompt only inside its box"}),
            "include_global_in_boxes": ("BOOLEAN", {"default": False,
                                                    "tooltip": "Tokens inside a box also see the global prompt"}),
            "vace_strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 3.0, "step": 0.05,
                                        "tooltip": "VACE hint scale"}),
        }}

    def generate(self, wan, text, boxes, plate, width, height, length, sampler=None, regional_prompts=True,
                 include_global_in_boxes=False, vace_strength=1.0):
        node = runtime.node_label(VBBoxRegionGenerate)
        C.check_size(node, length, height, width, wan)
        if len(boxes) == 0:
            raise runtime.NodeInputError(node, "boxes", "no boxes: nothing to generate")
        settings = S.settings_or_default(wan, sampler)
        pos, neg = text["prompt_embeds"], text.get("negative_embeds")
        box_ctx = []
        if regional_prompts:
            prompts = [b.prompt for b in boxes.boxes]
            enc = C.encode_text(wan, [p for p in prompts if p.strip()]) if any(p.strip() for p in prompts) else None
            j = 0
            for p in prompts:
                if p.strip():
                    box_ctx.append(enc[j:j + 1])
                    j += 1
                else:
                    box_ctx.append(pos)
        video = _frames_to(plate, length, height, width)
        img_emb = None
        if getattr(wan.module("transformer").config, "image_dim", None):
            if not wan.has("image_encoder"):
                raise runtime.NodeInputError(node, "wan", "this I2V model needs CLIP vision image tokens: load "
                                             "clip_vision")
            img_emb = C.clip_image_tokens(wan, plate[:1])
        bc = reco.box_conditioning(wan, video, boxes, pos, box_ctx, neg, vace_strength, include_global_in_boxes,
                                   img_emb)
        raw = S.sample(wan, bc.cond, settings, C.latent_shape(wan, length, height, width))
        return ({"samples": raw}, bc.pixel_mask.cpu())


class VBReCoLoRA:
    DESCRIPTION = ("Adds a HiDream ReCo LoRA (q/k/v/o + ffn of the DiT and VACE blocks) to a Wan2.1-VACE-1.3B "
                   "model: ReCo_ori (rank 128, alpha 128) or ReCo_ref (rank 256, alpha 256). Alpha comes from the "
                   "file (or a PEFT adapter_config.json beside it), else equals the rank. The released .ckpt must "
                   "be converted to .safetensors once (see docs). Needs weights: reco-lora (vibeboard models pull "
                   "reco-lora) and a Wan2.1-VACE-1.3B model.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("VB_WAN",)
    RETURN_NAMES = ("wan",)
    OUTPUT_TOOLTIPS = ("a copy of the Wan model with the ReCo LoRA",)
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "wan": ("VB_WAN", {"tooltip": "Wan2.1-VACE-1.3B"}),
            "lora_name": (lora_names() or ["none"], {"tooltip": "models/loras/ReCo/ReCo_ori_rank128….safetensors or "
                                                                "ReCo_ref_rank256….safetensors"}),
            "strength": ("FLOAT", {"default": 1.0, "min": -2.0, "max": 4.0, "step": 0.05, "tooltip": "LoRA strength"}),
        }, "optional": {
            "alpha": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1024.0,
                                "tooltip": "LoRA alpha; 0 = from the file, else its rank (ReCo trains alpha = rank)"}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, lora_name):
        # a clear missing-file message (with the pull command) instead of ComfyUI's generic "Value not in list"
        from ..models import preflight
        return preflight.validate_model_name("VBReCoLoRA", "lora_name", lora_name)

    def apply(self, wan, lora_name, strength, alpha=0.0):
        from ..models import lora as lora_mod
        node = runtime.node_label(VBReCoLoRA)
        path = model_folder(node, "lora_name", lora_name, "loras")
        try:
            groups = lora_mod.read_lora(path, alpha=float(alpha) if alpha else None, rslora=False)
            lora_mod.resolve(wan.module("transformer"), groups, strict=True)
        except ValueError as exc:
            raise runtime.NodeInputError(node, "lora_name", str(exc)) from None
        new = wan.with_parts()
        new.loras.append((groups, float(strength), "transformer"))
        return (new,)


class VBReCoEdit:
    DESCRIPTION = ("HiDream ReCo instruction edit: source and target side by side on one canvas, VACE mask on the "
                   "target half. ReCo_ref: an object picture as a VACE reference image. Outputs the target half. "
                   "Needs weights: Wan2.1-VACE-1.3B with a ReCo LoRA (Wan Model Loader + ReCo LoRA).")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("Wan latents of the edited (target) half",)
    FUNCTION = "edit"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "wan": ("VB_WAN", {"tooltip": "Wan2.1-VACE-1.3B + ReCo LoRA"}),
            "text": ("VB_WAN_TEXT", {"tooltip": "The edit instruction, e.g. 'Replace the cat with a fox.'"}),
            "source_video": ("IMAGE", {"tooltip": "Video to edit"}),
            **video_size_inputs(),
        }, "optional": {
            "sampler": ("VB_WAN_SAMPLER", {"tooltip": "Sampler settings (unwired: ReCo's 50 steps)"}),
            "reference_image": ("IMAGE", {"tooltip": "ReCo_ref: a picture of the object to add/replace with (its own "
                                                     "input, not a video frame)"}),
        }}

    def edit(self, wan, text, source_video, width, height, length, sampler=None, reference_image=None):
        node = runtime.node_label(VBReCoEdit)
        C.check_size(node, length, height, width, wan)
        if not reco.is_vace(wan.module("transformer")):
            raise runtime.NodeInputError(node, "wan", "ReCo needs a Wan VACE model (Wan2.1-VACE-1.3B)")
        settings = S.settings_or_default(wan, sampler, steps=50)
        src = _frames_to(source_video, length, height, width)
        _, raw = reco.reco_edit(wan, src, text["prompt_embeds"], settings, text.get("negative_embeds"),
                                None if reference_image is None else reference_image[:1])
        return ({"samples": raw[..., raw.shape[-1] // 2:]},)


def _parse_frames(node: str, text: str, count: int, length: int) -> list:
    try:
        frames = [int(float(x)) for x in text.replace(";", ",").split(",") if x.strip()]
    except ValueError:
        raise runtime.NodeInputError(node, "frames", f"comma-separated frame numbers expected, got {text!r}") from None
    if not frames:
        frames = [round(i * (length - 1) / max(count - 1, 1)) for i in range(count)]
    if len(frames) != count:
        raise runtime.NodeInputError(node, "frames", f"{len(frames)} frame numbers for {count} images")
    return frames


class VBMontageControl:
    DESCRIPTION = ("DreaMontage-style keyframes: places images at chosen frames of a shot as VACE control video + "
                   "mask (for Wan VACE). DreaMontage itself has no public code or weights; this is the technique, "
                   "training-free on Wan VACE, not their model.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "MASK")
    RETURN_NAMES = ("control_video", "control_masks")
    OUTPUT_TOOLTIPS = ("VACE control video with the keyframes in place", "VACE masks: 0 on keyframes, 1 to generate")
    FUNCTION = "build"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": ("IMAGE", {"tooltip": "Keyframe images, in order"}),
            "frames": ("STRING", {"default": "", "tooltip": "Frame of each image, e.g. '0, 40, 80' (empty = spread "
                                                            "evenly; negative = from the end)"}),
            **video_size_inputs(),
        }, "optional": {
            "hold": ("INT", {"default": 1, "min": 1, "max": 64, "tooltip": "Frames each keyframe lasts"}),
            "snap_to_latent": ("BOOLEAN", {"default": True,
                                           "tooltip": "Fill the keyframe's whole latent frame (4 pixel frames)"}),
        }}

    def build(self, images, frames, width, height, length, hold=1, snap_to_latent=True):
        node = runtime.node_label(VBMontageControl)
        fs = _parse_frames(node, frames, images.shape[0], length)
        try:
            control, mask, _ = keyframes_montage.montage_control(list(zip(fs, images)), length, height, width, hold,
                                                                 snap_to_latent)
        except ValueError as exc:
            raise runtime.NodeInputError(node, "frames", str(exc)) from None
        return (control, mask)


class VBKeyframeMontage:
    DESCRIPTION = ("Generates a shot through keyframes at arbitrary frames with Wan VACE (DreaMontage-style; no "
                   "public DreaMontage code or weights exist, this is the technique on Wan VACE).")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("Wan latents of the whole shot through the keyframes",)
    FUNCTION = "generate"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "wan": ("VB_WAN", {"tooltip": "Wan VACE model"}),
            "text": ("VB_WAN_TEXT", {"tooltip": "Encoded prompt"}),
            "images": ("IMAGE", {"tooltip": "Keyframe images, in order"}),
            "frames": ("STRING", {"default": "", "tooltip": "Frame of each image, e.g. '0, 40, 80' (empty = even)"}),
            **video_size_inputs(),
        }, "optional": {
            "sampler": ("VB_WAN_SAMPLER", {"tooltip": "Sampler settings"}),
            "vace_strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 3.0, "step": 0.05,
                                        "tooltip": "VACE hint scale"}),
        }}

    def generate(self, wan, text, images, frames, width, height, length, sampler=None, vace_strength=1.0):
        node = runtime.node_label(VBKeyframeMontage)
        C.check_size(node, length, height, width, wan)
        if not reco.is_vace(wan.module("transformer")):
            raise runtime.NodeInputError(node, "wan", "keyframe montage needs a Wan VACE model")
        fs = _parse_frames(node, frames, images.shape[0], length)
        settings = S.settings_or_default(wan, sampler)
        cond = keyframes_montage.montage_conditioning(wan, list(zip(fs, images)), length, height, width,
                                                      text["prompt_embeds"], text.get("negative_embeds"),
                                                      vace_scale=vace_strength)
        return ({"samples": S.sample(wan, cond, settings, C.latent_shape(wan, length, height, width))},)


NODE_CLASS_MAPPINGS = {
    "VBBoxesLoad": VBBoxesLoad,
    "VBBoxesSave": VBBoxesSave,
    "VBBoxesToMask": VBBoxesToMask,
    "VBBoxRegionGenerate": VBBoxRegionGenerate,
    "VBReCoLoRA": VBReCoLoRA,
    "VBReCoEdit": VBReCoEdit,
    "VBMontageControl": VBMontageControl,
    "VBKeyframeMontage": VBKeyframeMontage,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "VBBoxesLoad": "Boxes Load — Blocking JSON (VibeBoard)",
    "VBBoxesSave": "Boxes Save (VibeBoard)",
    "VBBoxesToMask": "Boxes to Mask (VibeBoard)",
    "VBBoxRegionGenerate": "Box Region Generate — Block Scene (VibeBoard)",
    "VBReCoLoRA": "ReCo LoRA (VibeBoard)",
    "VBReCoEdit": "ReCo Edit — HiDream (VibeBoard)",
    "VBMontageControl": "Keyframe Montage Control (VibeBoard)",
    "VBKeyframeMontage": "Keyframe Montage (VibeBoard)",
}
