"""Learned half of the Optics Engine: GenFocus (FLUX.1-dev + DeblurNet/BokehNet LoRAs) and Learn2Refocus
(SVD focal stacks). The mechanisms live in optics/genfocus.py and optics/learn2refocus.py."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..common import runtime
from ..common.runtime import NodeInputError, progress_bar
from ..models.loaders import model_path, pick_device

CATEGORY = "VibeBoard/Optics Engine"  # one category per studio module: learned and classic optics together
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass
class GenFocusHandle:
    """VB_GENFOCUS: FLUX transformer with the DeblurNet ("deblurring") / BokehNet ("bokeh") adapters."""
    transformer: object
    vae: object
    encode: object            # prompt -> (prompt_embeds, pooled, text_ids)
    scheduler_config: dict
    adapters: tuple = ()
    deblur_variant: str = "deblurNet"   # or "deblurNet_with_pre_deblur": which DeblurNet file is loaded

    def run(self, image, conditions, adapter, prompt, steps, guidance, seed):
        from ..optics.genfocus import generate

        if adapter not in self.adapters:
            raise ValueError(f"the {adapter!r} LoRA is not loaded (loaded: {list(self.adapters) or 'none'})")
        emb, pooled, ids = self.encode(prompt)
        h, w = image.shape[1] // 16 * 16, image.shape[2] // 16 * 16
        return generate(self.transformer, self.vae, emb, pooled, ids, h, w, conditions, adapter, steps, guidance,
                        seed, self.scheduler_config, progress_bar(steps))


def _fit(image: torch.Tensor, max_side: int) -> torch.Tensor:
    import torch.nn.functional as F

    h, w = image.shape[1:3]
    s = min(1.0, max_side / max(h, w))
    nh, nw = max(16, int(h * s) // 16 * 16), max(16, int(w * s) // 16 * 16)
    if (nh, nw) == (h, w):
        return image
    return F.interpolate(image.permute(0, 3, 1, 2), size=(nh, nw), mode="bilinear", align_corners=False,
                         antialias=True).permute(0, 2, 3, 1)


class VBGenFocusLoader:
    DESCRIPTION = ("Load FLUX.1-dev (diffusers folder) with GenFocus' DeblurNet and/or BokehNet LoRAs "
                   "(nycu-cplab/Genfocus-Model). FLUX.1-dev's non-commercial licence applies. Needs weights: "
                   "flux1-dev and genfocus-loras (vibeboard models pull <id>).")
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = ("VB_GENFOCUS",)
    RETURN_NAMES = ("genfocus",)
    OUTPUT_TOOLTIPS = ("FLUX.1-dev with the GenFocus LoRAs, for GenFocus Deblur / Bokeh",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "flux_folder": ("STRING", {"default": "diffusers/FLUX.1-dev", "tooltip": "diffusers FLUX.1-dev folder "
                                       "(models/diffusers/FLUX.1-dev after `vibeboard models pull flux1-dev`)."}),
            "deblur_lora": ("STRING", {"default": "Genfocus/deblurNet.safetensors", "tooltip": "DeblurNet LoRA in "
                                       "models/loras ('' to skip): deblurNet.safetensors (blurry image only) or "
                                       "deblurNet_with_pre_deblur.safetensors (+ a pre-deblurred image)."}),
            "bokeh_lora": ("STRING", {"default": "Genfocus/bokehNet.safetensors", "tooltip": "BokehNet LoRA in "
                                      "models/loras ('' to skip)."}),
            "dtype": (list(DTYPES), {"default": "bf16", "tooltip": "Compute precision."}),
            "device": (["auto", "cuda", "cpu"], {"default": "auto", "tooltip": "Where to run."}),
        }, "hidden": {"prompt": "PROMPT"}}

    def load(self, flux_folder, deblur_lora, bokeh_lora, dtype, device, prompt=None):
        from diffusers import FluxPipeline

        from ..optics.genfocus import deblur_variant, load_lora_file

        node = runtime.node_label(VBGenFocusLoader)
        where = dict(class_type="VBGenFocusLoader", prompt=prompt)
        folder = model_path(node, "flux_folder", flux_folder, must_be_dir=True, folder="diffusers", **where)
        loras = {name: model_path(node, name, value, folder="loras", **where)
                 for name, value in (("deblur_lora", deblur_lora), ("bokeh_lora", bokeh_lora)) if value.strip()}
        dev = pick_device(device)
        pipe = FluxPipeline.from_pretrained(folder, torch_dtype=DTYPES[dtype], local_files_only=True,
                                            use_safetensors=True).to(dev)
        adapters = []
        for name, input_name in (("deblurring", "deblur_lora"), ("bokeh", "bokeh_lora")):
            if input_name in loras:
                try:
                    load_lora_file(pipe.transformer, loras[input_name], name)
                except ValueError as exc:
                    raise NodeInputError(node, input_name, str(exc)) from None
                adapters.append(name)

        def encode(prompt):
            emb, pooled, ids = pipe.encode_prompt(prompt=prompt, prompt_2=None, device=dev, max_sequence_length=512)
            return emb, pooled, ids

        return (GenFocusHandle(pipe.transformer, pipe.vae, encode, dict(pipe.scheduler.config), tuple(adapters),
                               deblur_variant(deblur_lora)),)


class VBGenFocusDeblur:
    DESCRIPTION = ("GenFocus DeblurNet: a defocused / soft photo → all-in-focus image (FLUX + LoRA, 28 steps). "
                   "deblurNet reads the blurry image alone; deblurNet_with_pre_deblur also reads a pre-deblurred "
                   "image (black when none is wired), as upstream. Needs weights: FLUX.1-dev + the DeblurNet LoRA "
                   "from GenFocus Loader.")
    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("all_in_focus",)
    OUTPUT_TOOLTIPS = ("the all-in-focus image, float 0..1",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "genfocus": ("VB_GENFOCUS", {"tooltip": "From GenFocus Loader (with the DeblurNet LoRA)."}),
            "image": ("IMAGE", {"tooltip": "Blurry photo (first image of the batch is used)."}),
            "steps": ("INT", {"default": 28, "min": 1, "max": 100, "tooltip": "Sampling steps."}),
            "guidance": ("FLOAT", {"default": 3.5, "min": 0.0, "max": 20.0, "step": 0.1, "tooltip": "FLUX guidance."}),
            "seed": ("INT", {"default": 42, "min": 0, "max": 2**63 - 1, "tooltip": "Noise seed."}),
            "max_side": ("INT", {"default": 1024, "min": 64, "max": 4096, "step": 16,
                                 "tooltip": "Longest side the model runs at; when the shorter side is 512 px or more the "
                                            "image is denoised in overlapping 512-px tiles as GenFocus does."}),
        }, "optional": {
            "pre_deblur": ("IMAGE", {"tooltip": "Only with deblurNet_with_pre_deblur.safetensors: an already "
                                                "deblurred version of the image (e.g. from another deblurrer)."}),
        }}

    def run(self, genfocus, image, steps, guidance, seed, max_side, pre_deblur=None):
        import torch.nn.functional as F

        from ..optics.genfocus import DEBLUR_PROMPT, deblur_conditions

        img = _fit(image[:1].float(), max_side)
        pre = None
        if pre_deblur is not None:
            pre = F.interpolate(pre_deblur[:1].float().permute(0, 3, 1, 2), size=img.shape[1:3], mode="bilinear",
                                align_corners=False).permute(0, 2, 3, 1)
        try:
            conditions = deblur_conditions(img, getattr(genfocus, "deblur_variant", "deblurNet"), pre)
        except ValueError as exc:
            raise NodeInputError(runtime.node_label(VBGenFocusDeblur), "pre_deblur", str(exc)) from None
        try:
            out = genfocus.run(img, conditions, "deblurring", DEBLUR_PROMPT, steps, guidance, seed)
        except ValueError as exc:
            raise NodeInputError(runtime.node_label(VBGenFocusDeblur), "genfocus", str(exc)) from None
        return (out,)


class VBGenFocusBokeh:
    DESCRIPTION = ("GenFocus BokehNet: all-in-focus image + defocus map (Optics Engine 'Defocus Map', 0..1) → "
                   "photo with realistic lens blur focused where the map is 0. Needs weights: FLUX.1-dev + the "
                   "BokehNet LoRA from GenFocus Loader.")
    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)
    OUTPUT_TOOLTIPS = ("the photo with lens blur, float 0..1",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "genfocus": ("VB_GENFOCUS", {"tooltip": "From GenFocus Loader (with the BokehNet LoRA)."}),
            "image": ("IMAGE", {"tooltip": "All-in-focus image (e.g. from GenFocus Deblur)."}),
            "defocus_map": ("MASK", {"tooltip": "Normalised defocus |K·(1/z − 1/z_f)|/100 from the Optics Engine."}),
            "steps": ("INT", {"default": 28, "min": 1, "max": 100, "tooltip": "Sampling steps."}),
            "seed": ("INT", {"default": 1234, "min": 0, "max": 2**63 - 1, "tooltip": "Noise seed."}),
            "max_side": ("INT", {"default": 1024, "min": 64, "max": 4096, "step": 16, "tooltip": "Longest side."}),
        }}

    def run(self, genfocus, image, defocus_map, steps, seed, max_side):
        import torch.nn.functional as F

        from ..optics.genfocus import BOKEH_PROMPT, bokeh_conditions

        img = _fit(image[:1].float(), max_side)
        defocus_map = defocus_map[None] if defocus_map.dim() == 2 else defocus_map  # one [H, W] mask
        d = F.interpolate(defocus_map[:1, None].float(), size=img.shape[1:3], mode="bilinear", align_corners=False)[:, 0]
        try:
            out = genfocus.run(img, bokeh_conditions(img, d), "bokeh", BOKEH_PROMPT, steps, 1.0, seed)
        except ValueError as exc:
            raise NodeInputError(runtime.node_label(VBGenFocusBokeh), "genfocus", str(exc)) from None
        return (out,)


class VBLearn2RefocusLoader:
    DESCRIPTION = ("Load Learn2Refocus (fine-tuned SVD img2vid UNet, tedlasai/learn2refocus checkpoint-200000/unet) "
                   "with the SVD VAE and CLIP image encoder. Non-commercial (CC BY-NC-ND) weights.")
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = ("VB_REFOCUS",)
    RETURN_NAMES = ("refocus",)
    OUTPUT_TOOLTIPS = ("the Learn2Refocus pipeline, for Learn2Refocus",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "unet_folder": ("STRING", {"default": "diffusers/learn2refocus/checkpoint-200000/unet",
                                       "tooltip": "Fine-tuned UNet folder (where `vibeboard models pull "
                                                  "learn2refocus-unet` puts it)."}),
            "svd_folder": ("STRING", {"default": "diffusers/stable-video-diffusion-img2vid", "tooltip": "SVD diffusers folder."}),
            "dtype": (list(DTYPES), {"default": "fp16", "tooltip": "Compute precision."}),
            "device": (["auto", "cuda", "cpu"], {"default": "auto", "tooltip": "Where to run."}),
        }, "hidden": {"prompt": "PROMPT"}}

    def load(self, unet_folder, svd_folder, dtype, device, prompt=None):
        from ..optics.learn2refocus import RefocusModel, load_refocus_unet, load_svd_parts

        node = runtime.node_label(VBLearn2RefocusLoader)
        where = dict(class_type="VBLearn2RefocusLoader", prompt=prompt)
        dt, dev = DTYPES[dtype], pick_device(device)
        unet_path = model_path(node, "unet_folder", unet_folder, must_be_dir=True, folder="diffusers", **where)
        svd_path = model_path(node, "svd_folder", svd_folder, must_be_dir=True, folder="diffusers", **where)
        try:
            unet = load_refocus_unet(unet_path, dt)
        except ValueError as exc:
            raise NodeInputError(node, "unet_folder", str(exc)) from None
        vae, enc, sched = load_svd_parts(svd_path, dt)
        return (RefocusModel(unet.to(dev), vae.to(dev), enc.to(dev), sched, dev, dt),)


class VBLearn2Refocus:
    DESCRIPTION = ("Learn2Refocus: one photo → a 9-slice focal stack (near → far), the photo kept at focal_index. "
                   "Defaults are the authors' inference settings (guidance 1.5 on every slice, motion bucket 0, "
                   "no noise augmentation, 25 steps). Needs weights: the pipeline from Learn2Refocus Loader.")
    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("focal_stack",)
    OUTPUT_TOOLTIPS = ("9 images near → far focus; the input photo sits at focal_index",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "refocus": ("VB_REFOCUS", {"tooltip": "From Learn2Refocus Loader."}),
            "image": ("IMAGE", {"tooltip": "Photo (first of the batch)."}),
            "focal_index": ("INT", {"default": 6, "min": 0, "max": 8, "tooltip": "Which slice the photo's own focus is (0 near … 8 far)."}),
            "steps": ("INT", {"default": 25, "min": 1, "max": 100, "tooltip": "Sampling steps."}),
            "min_guidance": ("FLOAT", {"default": 1.5, "min": 0.0, "max": 10.0, "step": 0.1,
                                       "tooltip": "CFG at slice 0 (authors: 1.5, constant)."}),
            "max_guidance": ("FLOAT", {"default": 1.5, "min": 0.0, "max": 10.0, "step": 0.1,
                                       "tooltip": "CFG at slice 8 (authors: 1.5, constant)."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 2**63 - 1, "tooltip": "Noise seed."}),
        }, "optional": {
            "motion_bucket_id": ("INT", {"default": 0, "min": 0, "max": 1023,
                                         "tooltip": "SVD motion bucket (authors: 0)."}),
            "noise_aug_strength": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                             "tooltip": "SVD noise-augmentation id (authors: 0)."}),
        }}

    def run(self, refocus, image, focal_index, steps, min_guidance, max_guidance, seed, motion_bucket_id=0,
            noise_aug_strength=0.0):
        from ..optics.learn2refocus import focal_stack

        stack = focal_stack(refocus, image[:1].float(), focal_index, steps, min_guidance, max_guidance, seed=seed,
                            motion_bucket_id=motion_bucket_id, noise_aug_strength=noise_aug_strength,
                            progress=progress_bar(steps))
        return (stack,)


NODE_CLASS_MAPPINGS = {
    "VBGenFocusLoader": VBGenFocusLoader,
    "VBGenFocusDeblur": VBGenFocusDeblur,
    "VBGenFocusBokeh": VBGenFocusBokeh,
    "VBLearn2RefocusLoader": VBLearn2RefocusLoader,
    "VBLearn2Refocus": VBLearn2Refocus,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "VBGenFocusLoader": "GenFocus Loader (VibeBoard)",
    "VBGenFocusDeblur": "GenFocus Deblur — All in Focus (VibeBoard)",
    "VBGenFocusBokeh": "GenFocus Bokeh (VibeBoard)",
    "VBLearn2RefocusLoader": "Learn2Refocus Loader (VibeBoard)",
    "VBLearn2Refocus": "Learn2Refocus Focal Stack (VibeBoard)",
}
