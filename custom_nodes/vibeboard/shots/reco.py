"""Box conditioner ("Block Scene") and HiDream ReCo in-context editing, on Wan VACE.

1. Box region generation (training-free): boxes -> per-frame pixel masks -> VACE inputs (inactive = plate outside
   the boxes, reactive = plate inside, 64-channel 8x8-folded mask) and, independently of the model, the plate's
   latents re-imposed outside the latent-grid mask after every sampler step plus a final composite. So outside
   every box the result latent *is* the plate latent; inside, the model generates (steered by regional prompts).
   Works with a plain Wan T2V transformer too (then it is pure latent inpainting, no VACE hints).

2. HiDream ReCo (HiDream-ai/ReCo, arXiv 2512.17650; Wan2.1-VACE-1.3B + LoRA rank 128): instruction-based edit.
   The source video and the target share one canvas side by side (width 2W): VACE video = [source | blank],
   VACE mask = 0 on the source half, 1 on the target half (`inference_reco_single.py::get_batch_from_video`);
   ReCo_ref takes an object picture as a second input: a VACE reference image (fitted into the canvas on white,
   encoded as one latent frame prepended in time, mask 0), as diffusers' WanVACEPipeline feeds reference images.
   The VACE mask is resampled in time with nearest-exact, as Wan VACE / diffusers / DiffSynth do. The LoRA targets
   q, k, v, o, ffn.0, ffn.2 of both the DiT blocks and the VACE blocks (rank 128 / alpha 128 for ReCo_ori,
   rank 256 / alpha 256 for ReCo_ref: alpha = rank unless the file says otherwise); the Wan layer's `models.lora`
   maps its PEFT keys (`blocks.N.self_attn.q.lora_A.default.weight`, `vace_blocks.N...`).

Both are conditioning builders for the one Wan sampler (wan/sampler.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from ..wan import conditioning as C
from ..wan import sampler as S
from . import boxes as boxes_mod
from .regional_attention import regional_attention, regional_context


def is_vace(transformer) -> bool:
    return hasattr(transformer, "vace_blocks")


# ---- box region generation ---------------------------------------------------------------------------------

@dataclass
class BoxConditioning:
    cond: C.WanConditioning
    latent_mask: torch.Tensor    # [1, 1, T, h, w] 1 = generated
    pixel_mask: torch.Tensor     # [F, H, W] union of the boxes
    plate_latents: torch.Tensor  # [1, 16, T, h, w] normalised


def box_conditioning(wan, plate: torch.Tensor, boxset, prompt_embeds: torch.Tensor,
                     box_embeds: Sequence[torch.Tensor] = (), negative_embeds: Optional[torch.Tensor] = None,
                     vace_scale: float = 1.0, include_global_in_boxes: bool = False,
                     image_embeds: Optional[torch.Tensor] = None) -> BoxConditioning:
    """Generate inside the boxes of `boxset` over the background `plate` video [1, 3, F, H, W] (-1..1).

    The plate's latents are held (on their noise trajectory) outside the boxes and are exactly the plate at the
    end. `box_embeds[k]` is box k's prompt embedding (regional prompts); empty = the global prompt everywhere.
    A VACE transformer also gets the plate as VACE hints; an I2V transformer (36 input channels) is conditioned
    on the plate's first frame; a T2V transformer relies on the held plate alone.
    """
    dit = wan.module("transformer")
    _, _, F, H, W = plate.shape
    pix = boxes_mod.pixel_masks(boxset, F, H, W)
    pix_union = boxes_mod.union(pix)
    lat_boxes = boxes_mod.latent_masks(pix)
    plate_latents = C.normalize(wan, C.vae_encode(wan, plate))
    lat_union = boxes_mod.union(lat_boxes)[None, None]  # [1, 1, T, h, w]
    cond = C.WanConditioning(prompt_embeds=prompt_embeds, negative_embeds=negative_embeds, image_embeds=image_embeds,
                             vace_scale=vace_scale)
    if is_vace(dit):
        cond.vace_context, _ = C.vace_context_from_video(wan, plate, (pix_union > 0.5).float(), temporal="group")
    if getattr(dit.config, "in_channels", 16) == 36:
        from .storymem import storymem_mask
        first = torch.zeros_like(plate)
        first[:, :, 0] = plate[:, :, 0]
        lat = C.normalize(wan, C.vae_encode(wan, first))
        cond.concat_latents = torch.cat([storymem_mask(0, F, 1, lat.shape[-2], lat.shape[-1]).to(lat), lat], dim=1)
    if len(box_embeds) > 0:
        if len(box_embeds) != len(boxset):
            raise ValueError(f"{len(box_embeds)} box prompts for {len(boxset)} boxes")
        cond.prompt_embeds, seg = regional_context(prompt_embeds, box_embeds)
        tmask = boxes_mod.token_masks(lat_boxes, tuple(dit.config.patch_size))
        cond.attention.append(
            lambda model: regional_attention(model, tmask.to(wan.device), seg, include_global_in_boxes))
    cond.holds.append(C.HeldRegion(plate_latents, 1 - lat_union, "renoise"))
    return BoxConditioning(cond, lat_union, pix_union, plate_latents)


# ---- HiDream ReCo ------------------------------------------------------------------------------------------

def reco_canvas(source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Source video [1, 3, F, H, W] (-1..1) -> (canvas [1, 3, F, H, 2W], mask [F, H, 2W]).

    Left half: the source (mask 0, kept). Right half: blank (0 = mid grey) to generate (mask 1).
    """
    _, _, F, H, W = source.shape
    canvas = torch.cat([source, torch.zeros_like(source)], dim=-1)
    mask = torch.zeros(F, H, 2 * W, dtype=source.dtype, device=source.device)
    mask[..., W:] = 1
    return canvas * (1 - mask[None, None]), mask


def reco_conditioning(wan, source: torch.Tensor, prompt_embeds: torch.Tensor,
                      negative_embeds: Optional[torch.Tensor] = None, reference: Optional[torch.Tensor] = None,
                      keep_source: bool = True) -> tuple[C.WanConditioning, int]:
    """The ReCo canvas as VACE conditioning for a Wan2.1-VACE DiT. Returns (conditioning, latent width of one half).

    reference: ReCo_ref's object picture IMAGE [1, H, W, 3] (a VACE reference frame, dropped after sampling).
    keep_source holds the source half's latents on their noise trajectory (the source half is given, not generated).
    """
    if not is_vace(wan.module("transformer")):
        raise ValueError("HiDream ReCo needs a Wan VACE transformer (Wan2.1-VACE-1.3B)")
    canvas, mask = reco_canvas(source)
    refs = None if reference is None else C.fit_reference(reference, canvas.shape[-2], canvas.shape[-1])
    vctx, n_ref = C.vace_context_from_video(wan, canvas, mask, refs, temporal="nearest")
    src_lat = C.normalize(wan, C.vae_encode(wan, torch.cat([source, torch.zeros_like(source)], dim=-1)))
    w_lat = src_lat.shape[-1] // 2
    cond = C.WanConditioning(prompt_embeds=prompt_embeds, negative_embeds=negative_embeds, vace_context=vctx,
                             num_ref_frames=n_ref)
    if keep_source:
        keep = torch.zeros(1, 1, 1, 1, src_lat.shape[-1])
        keep[..., :w_lat] = 1
        full = torch.cat([torch.zeros_like(src_lat[:, :, :n_ref]), src_lat], dim=2)
        held_frames = torch.ones(1, 1, full.shape[2], 1, 1)
        held_frames[:, :, :n_ref] = 0
        cond.holds.append(C.HeldRegion(full, keep * held_frames, "renoise"))
    return cond, w_lat


def reco_edit(wan, source: torch.Tensor, prompt_embeds: torch.Tensor, settings: S.SamplerSettings,
              negative_embeds=None, reference: Optional[torch.Tensor] = None, keep_source: bool = True,
              normalized: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the ReCo canvas through the one Wan sampler. Returns (target half latents, full canvas latents)."""
    cond, w_lat = reco_conditioning(wan, source, prompt_embeds, negative_embeds, reference, keep_source)
    _, _, T, h, w2 = cond.vace_context.shape
    x = S.sample(wan, cond, settings, (1, wan.latent_channels, T - cond.num_ref_frames, h, w2), normalized=normalized)
    return x[..., w_lat:], x
