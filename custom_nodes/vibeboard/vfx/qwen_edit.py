"""Qwen-Image-Edit ("Edit Shirt"): instruction edits with up to three reference images.

Runs diffusers' `QwenImageEditPlusPipeline` (Qwen-Image-Edit-2509 / 2511): every input image goes to
Qwen2.5-VL as "Picture N" (semantics) and, VAE-encoded, is appended to the latent sequence (appearance).
The pipeline has no mask input, so an optional mask is applied honestly *after* the edit: the edited frame is
composited over the original inside the (feathered) mask and the original is kept outside it.

Loading:
- a diffusers folder (`Qwen/Qwen-Image-Edit-2509` layout: transformer/, vae/, text_encoder/, tokenizer/,
  processor/, scheduler/), or
- ComfyUI single files for the 20B transformer (`qwen_image_edit_2509_*.safetensors`, plain or
  fp8-scaled, optional `model.diffusion_model.` prefix; diffusers key names) and the VAE
  (`qwen_image_vae.safetensors`, original Wan-VAE key names), with the text encoder, tokenizer, processor
  and scheduler taken from a diffusers-layout folder (their configs are not in the single files).

2509 vs 2511: the two releases have the same weights layout, but 2511 runs its transformer with `zero_cond_t=True`
(the reference-image tokens are modulated with timestep 0; diffusers' Qwen/Qwen-Image-Edit-2511
transformer/config.json sets it). A single file does not say which release it is, so the variant comes from an
explicit choice, else from '2511' / '2509' in the file name, else from the folder's transformer config.

Processor: transformers' own `Qwen2VLProcessor` when torchvision is importable (ComfyUI installs it), else
`qwen_vl_processor.QwenVLProcessor` (PIL image backend + the same image-token expansion), so the pipeline
also runs on machines without torchvision.
"""
from __future__ import annotations

import inspect
import math
import os

import torch
import torch.nn.functional as F

from .qwen_vl_processor import QwenVLProcessor, standard_processor_available

COMFY_PREFIXES = ("model.diffusion_model.", "diffusion_model.", "model.")


def strip_prefix(state: dict) -> dict:
    for prefix in COMFY_PREFIXES:
        if any(k.startswith(prefix) for k in state):
            return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}
    return state


def infer_transformer_config(state: dict, attention_head_dim: int = 128, axes_dims_rope=None) -> dict:
    inner = state["img_in.weight"].shape[0]
    layers = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("transformer_blocks."))
    in_ch = state["img_in.weight"].shape[1]
    out_ch = state["proj_out.weight"].shape[0] // 4  # patch 2×2
    head = attention_head_dim
    rope_t = head // 8  # Qwen-Image: axes (16, 56, 56) for 128-dim heads
    rest = head - rope_t
    return dict(patch_size=2, in_channels=in_ch, out_channels=out_ch, num_layers=layers,
                attention_head_dim=head, num_attention_heads=inner // head,
                joint_attention_dim=state["txt_in.weight"].shape[1],
                axes_dims_rope=tuple(axes_dims_rope or (rope_t, rest // 2, rest - rest // 2)))


def release_variant(transformer_file: str = "", folder: str = "", variant: str = "auto") -> str:
    """'2511' or '2509' (or '' when nothing tells): explicit choice > file name > the folder's transformer config."""
    if variant in ("2509", "2511"):
        return variant
    name = os.path.basename(transformer_file or "").lower()
    for tag in ("2511", "2509"):
        if tag in name:
            return tag
    if transformer_file and not folder:
        return ""
    cfg_path = os.path.join(folder, "transformer", "config.json") if folder else ""
    if cfg_path and os.path.isfile(cfg_path):
        import json
        with open(cfg_path) as fh:
            return "2511" if json.load(fh).get("zero_cond_t") else "2509"
    return "2511" if "2511" in os.path.basename(os.path.normpath(folder or "")) else ""


def set_zero_cond_t(model, enabled: bool) -> None:
    """Switch 2511's zero_cond_t on a built transformer (a forward-time flag on the model and every block)."""
    model.register_to_config(zero_cond_t=bool(enabled))
    model.zero_cond_t = bool(enabled)
    for block in model.transformer_blocks:
        block.zero_cond_t = bool(enabled)


def load_transformer_file(path: str, dtype=torch.bfloat16, attention_head_dim: int = 128, axes_dims_rope=None,
                          zero_cond_t: bool = False):
    """QwenImageTransformer2DModel from a ComfyUI/diffusers single safetensors file (zero_cond_t: 2511)."""
    from diffusers import QwenImageTransformer2DModel

    from ..models.loaders import _assign, dequantize_scaled, read_safetensors

    state = strip_prefix(dequantize_scaled(read_safetensors(path), dtype))
    if "img_in.weight" not in state or "txt_in.weight" not in state:
        raise ValueError(f"{path}: not a Qwen-Image transformer (no img_in / txt_in weights)")
    cfg = infer_transformer_config(state, attention_head_dim, axes_dims_rope)
    cfg["zero_cond_t"] = bool(zero_cond_t)
    with torch.device("meta"):
        model = QwenImageTransformer2DModel(**cfg)
    _assign(model, {k: v.to(dtype) for k, v in state.items()})
    model.pos_embed = type(model.pos_embed)(theta=10000, axes_dim=list(cfg["axes_dims_rope"]), scale_rope=True)
    return model.eval()


def load_vae_file(path: str, dtype=torch.bfloat16):
    """AutoencoderKLQwenImage (the Wan2.1-VAE architecture) from a ComfyUI single file."""
    from diffusers import AutoencoderKLQwenImage

    from ..models import wan_keys
    from ..models.loaders import _assign, read_safetensors

    raw = strip_prefix(read_safetensors(path))
    state = ({wan_keys.wan_vae_to_diffusers_key(k, 2): v for k, v in raw.items()}
             if wan_keys.is_original_wan_vae(raw.keys()) else raw)
    if "encoder.conv_in.weight" not in state:
        raise ValueError(f"{path}: not a Qwen-Image / Wan 2.1 VAE")
    with torch.device("meta"):
        vae = AutoencoderKLQwenImage(base_dim=state["encoder.conv_in.weight"].shape[0],
                                     z_dim=state["post_quant_conv.weight"].shape[0])
    _assign(vae, {k: v.to(dtype) for k, v in state.items()})
    return vae.eval()


def load_pipeline(folder: str, transformer_file: str = "", vae_file: str = "", dtype=torch.bfloat16,
                  attention_head_dim: int = 128, variant: str = "auto"):
    """QwenImageEditPlusPipeline from a diffusers folder, with single-file overrides. `variant` (auto/2509/2511)
    decides zero_cond_t for a single-file transformer (see release_variant)."""
    from diffusers import QwenImageEditPlusPipeline

    if not os.path.isdir(folder):
        raise FileNotFoundError(f"Qwen-Image-Edit folder not found: {folder}")
    parts = {}
    release = release_variant(transformer_file, folder, variant)
    if transformer_file:
        axes = None  # head size and RoPE split are not in the weights: the folder's config has them
        cfg_path = os.path.join(folder, "transformer", "config.json")
        if os.path.isfile(cfg_path):
            import json
            with open(cfg_path) as fh:
                cfg = json.load(fh)
            attention_head_dim = cfg.get("attention_head_dim", attention_head_dim)
            axes = cfg.get("axes_dims_rope")
        parts["transformer"] = load_transformer_file(transformer_file, dtype, attention_head_dim, axes,
                                                     zero_cond_t=release == "2511")
    if vae_file:
        parts["vae"] = load_vae_file(vae_file, dtype)
    # VIBEBOARD_QWEN_PROCESSOR=builtin forces ours (e.g. a torchvision that imports but fails at run time)
    standard = os.environ.get("VIBEBOARD_QWEN_PROCESSOR", "auto") != "builtin" and standard_processor_available()
    if not standard:
        parts["processor"] = None  # diffusers would try transformers' Qwen2VLProcessor and fail
    pipe = QwenImageEditPlusPipeline.from_pretrained(folder, dtype=dtype, local_files_only=True,
                                                     use_safetensors=True, **parts)
    if not standard:
        pipe.processor = QwenVLProcessor.from_folder(os.path.join(folder, "processor"), pipe.tokenizer)
    if not transformer_file and variant in ("2509", "2511"):  # an explicit choice overrides the folder's config
        set_zero_cond_t(pipe.transformer, variant == "2511")
    forward_mm_token_types(pipe.text_encoder)
    return pipe


def forward_mm_token_types(text_encoder) -> bool:
    """Give Qwen2.5-VL its 3D (M-RoPE) positions again under transformers ≥ 5.15.

    diffusers' edit pipelines pass only input_ids / attention_mask / pixel_values / image_grid_thw to the text
    encoder and drop the processor's `mm_token_type_ids` (diffusers issue #14194); without it transformers 5
    silently falls back to 1D positions for the image tokens, unlike the transformers 4 the model was released
    with. A forward pre-hook rebuilds the field from input_ids (image token → 1, video token → 2)."""
    if "mm_token_type_ids" not in inspect.signature(text_encoder.forward).parameters:
        return False  # older transformers: positions come from input_ids already
    image_id, video_id = text_encoder.config.image_token_id, text_encoder.config.video_token_id

    def add_token_types(module, args, kwargs):
        ids = kwargs.get("input_ids")
        if ids is None or kwargs.get("mm_token_type_ids") is not None or kwargs.get("image_grid_thw") is None:
            return None
        types = (ids == image_id).to(torch.int32) + 2 * (ids == video_id).to(torch.int32)
        return args, {**kwargs, "mm_token_type_ids": types}

    text_encoder.register_forward_pre_hook(add_token_types, with_kwargs=True)
    return True


def feather(mask: torch.Tensor, radius: float) -> torch.Tensor:
    """Soften a [B, H, W] mask with a Gaussian of σ = radius pixels (0 = hard edge)."""
    if radius <= 0:
        return mask.clamp(0, 1)
    k = int(math.ceil(3 * radius))
    t = torch.arange(-k, k + 1, dtype=torch.float32)
    g = torch.exp(-(t ** 2) / (2 * radius ** 2))
    g = (g / g.sum()).to(mask)
    m = F.pad(mask[:, None].float(), (k, k, k, k), mode="replicate")
    m = F.conv2d(F.conv2d(m, g.view(1, 1, 1, -1)), g.view(1, 1, -1, 1))
    return m[:, 0].clamp(0, 1)


def composite(original: torch.Tensor, edited: torch.Tensor, mask: torch.Tensor, feather_px: float = 4.0):
    """Keep `original` outside the mask: IMAGE [1, H, W, 3] each (edited resized to the original)."""
    h, w = original.shape[1:3]
    if edited.shape[1:3] != (h, w):
        edited = F.interpolate(edited.permute(0, 3, 1, 2), size=(h, w), mode="bilinear",
                               align_corners=False, antialias=True).permute(0, 2, 3, 1)
    m = mask[:1].float()
    if m.shape[1:] != (h, w):
        m = F.interpolate(m[:, None], size=(h, w), mode="bilinear", align_corners=False)[:, 0]
    m = feather(m, feather_px)[..., None]
    return original * (1 - m) + edited * m


def to_pil(image: torch.Tensor):
    from PIL import Image

    arr = (image.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    return Image.fromarray(arr)


def output_size(height: int, width: int, megapixels: float = 1.0) -> tuple[int, int]:
    """(height, width) of the edit: the edited image's aspect at `megapixels` (×1024²), multiples of 32 —
    the pipeline's own rule, but from Picture 1 (the pipeline takes the *last* image's aspect)."""
    area = max(float(megapixels), 1e-3) * 1024 * 1024
    w = math.sqrt(area * width / height)
    return max(32, round(w * height / width / 32) * 32), max(32, round(w / 32) * 32)


@torch.no_grad()
def edit(pipe, images: list, instruction: str, negative: str = " ", steps: int = 40, true_cfg: float = 4.0,
         seed: int = 0, mask: torch.Tensor | None = None, feather_px: float = 4.0,
         megapixels: float = 1.0) -> torch.Tensor:
    """images: list of IMAGE [H, W, 3] (the first is edited, the rest are references). Returns IMAGE [1, H, W, 3]."""
    import numpy as np

    gen = torch.Generator("cpu").manual_seed(int(seed))
    height, width = output_size(images[0].shape[0], images[0].shape[1], megapixels)
    out = pipe(image=[to_pil(i) for i in images], prompt=instruction, negative_prompt=negative or " ",
               num_inference_steps=steps, true_cfg_scale=true_cfg, generator=gen, output_type="np",
               height=height, width=width)
    edited = torch.from_numpy(np.asarray(out.images[0])).float()[None]
    if mask is not None:
        return composite(images[0][None].float(), edited, mask, feather_px)
    return edited
