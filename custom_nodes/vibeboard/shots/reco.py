"""Box conditioner ("Block Scene") and HiDream ReCo in-context editing, on Wan VACE.

1. Box region generation (training-free): boxes -> per-frame pixel masks -> VACE inputs (inactive = plate outside
   the boxes, reactive = plate inside, 64-channel 8x8-folded mask) and, independently of the model, the plate's
   latents re-imposed outside the latent-grid mask after every sampler step plus a final composite. So outside
   every box the result latent *is* the plate latent; inside, the model generates (steered by regional prompts).
   Works with a plain Wan T2V transformer too (then it is pure latent inpainting, no VACE hints).

2. HiDream ReCo (HiDream-ai/ReCo, arXiv 2512.17650; Wan2.1-VACE-1.3B + LoRA rank 128): instruction-based edit.
   The source video and the target share one canvas side by side (width 2W): VACE video = [source | blank],
   VACE mask = 0 on the source half, 1 on the target half (`inference_reco_single.py::get_batch_from_video`);
   with a reference image (ReCo_ref) the target half of frame 0 holds it and is unmasked. The LoRA targets
   q, k, v, o, ffn.0, ffn.2 of both the DiT blocks and the VACE blocks; the Wan layer's `models.lora` maps its PEFT keys
   (`blocks.N.self_attn.q.lora_A.default.weight`, `vace_blocks.N...`) and the diffusers conversion.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from . import boxes as boxes_mod
from . import wan_io
from .regional_attention import regional_attention, regional_context
from .sampling import HeldRegion, WanDenoiser, denoiser_options, sample_flow


# ---- VACE inputs -------------------------------------------------------------------------------------------

def vace_mask_channels(mask: torch.Tensor, patch: int = 2, temporal: str = "group") -> torch.Tensor:
    """Pixel mask [1, 1, F, H, W] -> VACE mask latents [1, 64, T, H/8, W/8] (8x8 spatial fold).

    temporal "group": latent frame t takes the max over the pixel frames the causal VAE packs into it (0; 4t-3..4t),
    so the mask lines up with the latents it describes. "nearest": diffusers' / Wan VACE's nearest-exact resampling
    (latent 0 then reads pixel frame 1, and groups are sampled off-centre).
    """
    _, _, F, H, W = mask.shape
    T = (F + 3) // 4
    h = H // (8 * patch) * patch
    w = W // (8 * patch) * patch
    m = mask[0, 0, :, :h * 8, :w * 8].reshape(F, h, 8, w, 8).permute(2, 4, 0, 1, 3).flatten(0, 1)  # [64, F, h, w]
    if temporal == "nearest":
        return torch.nn.functional.interpolate(m.unsqueeze(0), size=(T, h, w), mode="nearest-exact")
    out = torch.stack([m[:, 0]] + [m[:, 4 * t - 3:4 * t + 1].amax(dim=1) for t in range(1, T)], dim=1)
    return out.unsqueeze(0)


def vace_context(vae, video: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """VACE control latents [1, 96, T, h, w] from video [1, 3, F, H, W] (-1..1) and mask [1, 1, F, H, W] (1 = generate)."""
    m = (mask > 0.5).to(video.dtype)
    inactive = wan_io.encode_video(vae, video * (1 - m))
    reactive = wan_io.encode_video(vae, video * m)
    return torch.cat([inactive, reactive, vace_mask_channels(m).to(inactive)], dim=1)


def is_vace(transformer) -> bool:
    return hasattr(transformer, "vace_blocks")


# ---- box region generation ---------------------------------------------------------------------------------

@dataclass
class BoxResult:
    latents: torch.Tensor        # [1, 16, T, h, w] normalised, plate outside the boxes (exactly)
    latent_mask: torch.Tensor    # [1, 1, T, h, w] 1 = generated
    pixel_mask: torch.Tensor     # [F, H, W] union of the boxes
    plate_latents: torch.Tensor


def generate_in_boxes(transformer, vae, plate: torch.Tensor, boxset, context: torch.Tensor,
                      box_contexts: Sequence[torch.Tensor] = (), context_null: Optional[torch.Tensor] = None,
                      steps: int = 30, shift: float = 5.0, guidance: float = 5.0, seed: int = 0,
                      vace_scale: float = 1.0, include_global_in_boxes: bool = False,
                      plate_latents: Optional[torch.Tensor] = None, transformer_2=None,
                      boundary_ratio: Optional[float] = None, run_options: Optional[dict] = None,
                      image_embeds: Optional[torch.Tensor] = None) -> BoxResult:
    """Generate inside the boxes of `boxset` over the background `plate` video [1, 3, F, H, W] (-1..1).

    `box_contexts[k]` is box k's prompt embedding (regional prompts); empty = the global prompt everywhere.
    A VACE transformer also gets the plate as VACE hints; an I2V transformer (36 input channels) is conditioned
    on the plate's first frame; a T2V transformer relies on the re-imposed plate alone.
    """
    _, _, F, H, W = plate.shape
    pix = boxes_mod.pixel_masks(boxset, F, H, W)
    pix_union = boxes_mod.union(pix)
    lat_boxes = boxes_mod.latent_masks(pix)
    if plate_latents is None:
        plate_latents = wan_io.encode_video(vae, plate)
    dev = plate_latents.device
    lat_union = boxes_mod.union(lat_boxes)[None, None].to(dev)  # [1, 1, T, h, w]
    vctx = vace_context(vae, plate, pix_union[None, None].to(plate)) if is_vace(transformer) else None
    y = None
    if getattr(transformer.config, "in_channels", 16) == 36:
        from .storymem import storymem_mask
        first = torch.zeros_like(plate)
        first[:, :, 0] = plate[:, :, 0]
        lat = wan_io.encode_video(vae, first)
        y = torch.cat([storymem_mask(0, F, 1, lat.shape[-2], lat.shape[-1], lat.device).to(lat), lat], dim=1)
    ctx, seg = context, [context.shape[1]]
    use_regions = len(box_contexts) > 0
    if use_regions:
        if len(box_contexts) != len(boxset):
            raise ValueError(f"{len(box_contexts)} box prompts for {len(boxset)} boxes")
        ctx, seg = regional_context(context, box_contexts)
    wrap = None
    if use_regions:
        tmask = boxes_mod.token_masks(lat_boxes, tuple(transformer.config.patch_size)).to(dev)
        wrap = lambda model: regional_attention(model, tmask, seg, include_global_in_boxes)  # noqa: E731
    den = WanDenoiser(transformer=transformer, context=ctx, context_null=context_null, guidance=guidance,
                      transformer_2=transformer_2, boundary_ratio=boundary_ratio, vace_context=vctx,
                      vace_scale=vace_scale, wrap_expert=wrap, y=y, image_embeds=image_embeds,
                      **denoiser_options(run_options))
    gen = torch.Generator().manual_seed(int(seed))
    noise = torch.randn(plate_latents.shape, generator=gen).to(plate_latents)
    hold = HeldRegion(plate_latents, 1 - lat_union, "renoise", noise=noise)
    x = sample_flow(den, noise, steps, shift, holds=[hold], scheduler=(run_options or {}).get("scheduler"))
    x = plate_latents * (1 - lat_union) + x * lat_union  # final composite: the plate, exactly, outside
    return BoxResult(x, lat_union, pix_union, plate_latents)


# ---- HiDream ReCo ------------------------------------------------------------------------------------------

def reco_canvas(source: torch.Tensor, reference: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Source video [1, 3, F, H, W] (-1..1) -> (canvas [1, 3, F, H, 2W], mask [1, 1, F, H, 2W]).

    Left half: the source (mask 0, kept). Right half: blank (0 = mid grey) to generate (mask 1). A reference image
    [1, 3, H, W] goes in the right half of frame 0 and is unmasked there (ReCo_ref).
    """
    _, C, F, H, W = source.shape
    canvas = torch.cat([source, torch.zeros_like(source)], dim=-1)
    mask = torch.zeros(1, 1, F, H, 2 * W, dtype=source.dtype, device=source.device)
    mask[..., W:] = 1
    if reference is not None:
        canvas[:, :, 0, :, W:] = reference.to(canvas)
        mask[:, :, 0, :, W:] = 0
    return canvas * (1 - mask), mask


def reco_edit(transformer, vae, source: torch.Tensor, context: torch.Tensor, context_null=None,
              reference: Optional[torch.Tensor] = None, steps: int = 50, shift: float = 5.0, guidance: float = 5.0,
              seed: int = 0, keep_source: bool = True,
              run_options: Optional[dict] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the ReCo canvas through a VACE transformer. Returns (target latents [1,16,T,h,w/2·], full canvas latents).

    keep_source re-imposes the source half's latents at every step (the source half is given, not generated).
    """
    if not is_vace(transformer):
        raise ValueError("HiDream ReCo needs a Wan VACE transformer (Wan2.1-VACE-1.3B)")
    canvas, mask = reco_canvas(source, reference)
    vctx = vace_context(vae, canvas, mask)
    src_lat = wan_io.encode_video(vae, torch.cat([source, torch.zeros_like(source)], dim=-1))
    w_lat = src_lat.shape[-1] // 2
    den = WanDenoiser(transformer=transformer, context=context, context_null=context_null, guidance=guidance,
                      vace_context=vctx, **denoiser_options(run_options))
    gen = torch.Generator().manual_seed(int(seed))
    noise = torch.randn(src_lat.shape, generator=gen).to(src_lat)
    holds = []
    if keep_source:
        keep = torch.zeros(1, 1, 1, 1, src_lat.shape[-1], device=src_lat.device)
        keep[..., :w_lat] = 1
        holds.append(HeldRegion(src_lat, keep, "renoise", noise=noise))
    x = sample_flow(den, noise, steps, shift, holds=holds, scheduler=(run_options or {}).get("scheduler"))
    return x[..., w_lat:], x
