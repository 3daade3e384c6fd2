"""DreaMontage-style keyframes: conditioning images at arbitrary frame positions of one shot, via Wan VACE.

DreaMontage (ByteDance, Dec 2025) has **no public code or weights**; this is the technique it describes
(arbitrary-frame guidance for one-shot videos with controlled transitions), built training-free on Wan VACE's
frame/mask conditioning - not their model. Each keyframe is written into the VACE control video at its frame and
unmasked there (mask 0 = keep), every other frame is masked (1 = generate).

Wan's VAE is causal and 4x temporally compressed: latent frame 0 is pixel frame 0, latent frame t >= 1 covers
pixel frames 4t-3 .. 4t. A keyframe on one pixel frame would share its latent frame with generated frames, so by
default each keyframe fills the whole pixel-frame group of its latent frame (`snap_to_latent`), and the VACE
mask is reduced per group (`vace_mask_latents(temporal="group")`), so the constraint lands exactly on one latent
frame.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from ..wan import conditioning as C


def latent_group(frame: int, num_frames: int) -> range:
    """Pixel frames sharing the latent frame of `frame`."""
    if frame <= 0:
        return range(0, 1)
    t = (frame + 3) // 4
    return range(4 * t - 3, min(4 * t + 1, num_frames))


def montage_control(keyframes: Sequence[tuple], num_frames: int, height: int, width: int, hold: int = 1,
                    snap_to_latent: bool = True):
    """keyframes [(frame, IMAGE [H, W, 3] or [1, H, W, 3])] -> (control IMAGE [F, H, W, 3], MASK [F, H, W], frames used).

    Unconstrained frames are mid grey (0 in the VAE's -1..1 range), masked 1; keyframe frames hold the image,
    masked 0. Negative frame indices count from the end (-1 = last frame).
    """
    control = torch.full((num_frames, height, width, 3), 0.5)
    mask = torch.ones(num_frames, height, width)
    used = []
    for frame, image in keyframes:
        f = int(frame) + num_frames if int(frame) < 0 else int(frame)  # -1 = last; no wrapping past the start
        if not 0 <= f < num_frames:
            raise ValueError(f"keyframe at frame {frame} is outside the shot (0..{num_frames - 1})")
        img = image if image.dim() == 3 else image[0]
        img = C.resize_bicubic(img[None].float(), height, width)[0]
        frames = set(range(f, min(f + max(1, hold), num_frames)))
        if snap_to_latent:
            frames = {g for x in frames for g in latent_group(x, num_frames)}
        for g in sorted(frames):
            control[g] = img
            mask[g] = 0
            used.append(g)
    return control, mask, sorted(set(used))


def latent_frames_constrained(mask: torch.Tensor) -> list:
    """Which latent frames the VACE mask (per latent group, see `montage_conditioning`) marks as kept."""
    m = C.vace_mask_latents(mask[:, :16, :16].float(), temporal="group")[0, :, 0, 0]
    return [t for t in range(m.shape[0]) if float(m[t]) < 0.5]


def montage_conditioning(wan, keyframes: Sequence[tuple], num_frames: int, height: int, width: int,
                         prompt_embeds: torch.Tensor, negative_embeds: Optional[torch.Tensor] = None, hold: int = 1,
                         snap_to_latent: bool = True, vace_scale: float = 1.0) -> C.WanConditioning:
    """The keyframes as VACE frame/mask conditioning for a Wan VACE DiT (conditioning builder)."""
    if not hasattr(wan.module("transformer"), "vace_blocks"):
        raise ValueError("keyframe montage needs a Wan VACE transformer (frame/mask conditioning)")
    control, mask, _ = montage_control(keyframes, num_frames, height, width, hold, snap_to_latent)
    vctx, _ = C.vace_context_from_video(wan, C.images_to_video(control), (mask > 0.5).float(), temporal="group")
    return C.WanConditioning(prompt_embeds=prompt_embeds, negative_embeds=negative_embeds, vace_context=vctx,
                             vace_scale=vace_scale)
