"""StoryMem (Kevin-thu/StoryMem, arXiv 2512.19539): memory-conditioned shot generation on Wan2.2-I2V-A14B.

Mechanism (from `wan/memory2video.py`):
- every memory keyframe is VAE-encoded *as a single image* (one latent frame each) -> memory [16, M, h, w];
- the shot's own condition u = VAE(first frame + zeros) (MI2V), VAE(5 motion frames + zeros) (MM2V) or
  VAE(zeros) (M2V) -> [16, T, h, w];
- y = cat([mask (4 ch), cat([memory, u], time)], channel); the mask is 1 on memory frames and on the given pixel
  frames, built in pixel-frame space with the first entries repeated x4 and folded into 4 channels like Wan I2V;
- the transformer input is cat([x (16 ch), y (20 ch)]) over M + T latent frames; the first M are dropped at the end.
- Negative RoPE shift (paper sec. 3.3): temporal positions {-M S, ..., -S, 0, ..., T-1}. S = 5 by default
  (`MEMORY_ROPE_SHIFT = 5` in StoryMem-derived memory-model code; the value in the official post-fix code is
  not verified here - it is a parameter).

Memory modes for the memory frames of the noisy latent x (y always carries the clean memory latents):
- "free" (default, as upstream `memory2video.py`: the latent is all noise, memory frames included, sampled with
  the shot and conditioned only through y, then discarded);
- "fixed": held clean at every step, so they stay exactly what was injected (the user asks to hold them clean);
- "renoise": held on their ideal trajectory (1 - sigma) memory + sigma noise, re-imposed every step.

Upstream defaults (`wan/configs/wan_m2v_A14B.py`): 40 UniPC steps, shift 4.0, CFG 3.5 for both experts, boundary
0.9; `DEFAULTS` below is what the node uses when no sampler node is wired.

This module is a conditioning builder: it fills a `WanConditioning` for the one Wan sampler (wan/sampler.py).
"""
from __future__ import annotations

from typing import Optional

import torch

from ..wan import conditioning as C
from ..wan import sampler as S
from ..wan.rope import memory_frame_positions

MOTION_FRAMES = 5  # MM2V: last 5 frames of the previous shot
DEFAULTS = dict(steps=40, shift=4.0, cfg=3.5, scheduler="unipc")  # upstream wan_m2v_A14B.py
MEMORY_MODES = ("free", "fixed", "renoise")


def storymem_mask(num_memory: int, num_frames: int, cond_pixel_frames: int, lat_h: int, lat_w: int,
                  device=None) -> torch.Tensor:
    """4-channel I2V mask [1, 4, M + T, h, w]: 1 on memory frames and on the first `cond_pixel_frames` frames."""
    m = torch.ones(1, num_frames + num_memory, lat_h, lat_w, device=device)
    m[:, num_memory:] = 0
    if cond_pixel_frames > 0:
        m[:, num_memory:num_memory + cond_pixel_frames] = 1
    m = torch.cat([torch.repeat_interleave(m[:, :num_memory + 1], 4, dim=1), m[:, num_memory + 1:]], dim=1)
    m = m.view(1, m.shape[1] // 4, 4, lat_h, lat_w).transpose(1, 2)
    return m


def build_condition(memory_latents: torch.Tensor, shot_cond_latents: torch.Tensor, num_frames: int,
                    cond_pixel_frames: int) -> torch.Tensor:
    """y [1, 20, M + T, h, w] from memory latents [1, 16, M, h, w] and the shot condition [1, 16, T, h, w]."""
    _, _, T, h, w = shot_cond_latents.shape
    if (num_frames - 1) // 4 + 1 != T:
        raise ValueError(f"num_frames {num_frames} gives {(num_frames - 1) // 4 + 1} latent frames, "
                         f"the shot condition has {T}")
    mask = storymem_mask(memory_latents.shape[2], num_frames, cond_pixel_frames, h, w,
                         device=shot_cond_latents.device)
    lat = torch.cat([memory_latents.to(shot_cond_latents), shot_cond_latents], dim=2)
    return torch.cat([mask.to(lat.dtype), lat], dim=1)


def shot_condition(wan, num_frames: int, height: int, width: int, first_frame: Optional[torch.Tensor] = None,
                   motion_frames: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, int]:
    """(u latents [1, 16, T, h, w] normalised, number of given pixel frames). Frames are IMAGE [K, H, W, 3] 0..1."""
    video = torch.zeros(1, 3, num_frames, height, width)
    given = 0
    src = motion_frames if motion_frames is not None else first_frame
    if src is not None:
        src = C.resize_bicubic(src[-MOTION_FRAMES:] if motion_frames is not None else src[:1], height, width)
        given = src.shape[0]
        video[:, :, :given] = C.images_to_video(src)[:, :, :given]
    return C.normalize(wan, C.vae_encode(wan, video)), given


def encode_memory(wan, bank, height: int, width: int, cache: bool = True) -> torch.Tensor:
    """Memory keyframes -> [1, 16, M, h, w] normalised, one latent frame each (each keyframe encoded as a one-frame
    video, as upstream); reuses latents cached in the bank at this size."""
    ss = wan.scale_spatial
    z_dim = wan.latent_channels
    if len(bank) == 0:
        return torch.zeros(1, z_dim, 0, height // ss, width // ss)
    todo = [i for i, e in enumerate(bank.entries)
            if not cache or e.latent is None or tuple(e.latent_size or ()) != (height, width)
            or e.latent.shape[0] != z_dim]
    fresh = {}
    if todo:
        imgs = torch.stack([C.resize_bicubic(bank.entries[i].image_float()[None], height, width)[0] for i in todo])
        video = (imgs.permute(0, 3, 1, 2) * 2 - 1).unsqueeze(2)                    # [n, 3, 1, H, W]
        lat = C.normalize(wan, C.vae_encode(wan, video)).squeeze(2).permute(1, 0, 2, 3)  # [16, n, h, w]
        for j, i in enumerate(todo):
            # cached in host RAM like latents read from disk: a CUDA copy here made torch.stack mix devices
            fresh[i] = lat[:, j].to("cpu", torch.float32, copy=True)
            if cache:
                bank.entries[i].latent = fresh[i]
                bank.entries[i].latent_size = (height, width)
    lats = [fresh[i] if i in fresh else e.latent for i, e in enumerate(bank.entries)]
    return torch.stack(lats, dim=1).unsqueeze(0).float()


def conditioning(prompt_embeds: torch.Tensor, negative_embeds: Optional[torch.Tensor], memory_latents: torch.Tensor,
                 shot_cond: torch.Tensor, num_frames: int, cond_pixel_frames: int, rope_gap: int = 5,
                 memory_mode: str = "free", image_embeds: Optional[torch.Tensor] = None) -> C.WanConditioning:
    """The StoryMem conditioning of one shot: memory frames lead the latent (dropped after sampling), y carries
    [mask | memory + shot condition], memory sits at negative RoPE positions, and is held per `memory_mode`."""
    if memory_mode not in MEMORY_MODES:
        raise ValueError(f"memory_mode must be one of {MEMORY_MODES}, got {memory_mode!r}")
    M = memory_latents.shape[2]
    _, c, T, h, w = shot_cond.shape
    cond = C.WanConditioning(prompt_embeds=prompt_embeds, negative_embeds=negative_embeds, image_embeds=image_embeds,
                             concat_latents=build_condition(memory_latents, shot_cond, num_frames, cond_pixel_frames),
                             num_ref_frames=M, rope_positions=memory_frame_positions(M, T, rope_gap))
    if M > 0 and memory_mode != "free":
        held = torch.zeros(1, c, M + T, h, w)
        held[:, :, :M] = memory_latents.float().cpu()
        mask = torch.zeros(1, 1, M + T, 1, 1)
        mask[:, :, :M] = 1
        cond.holds.append(C.HeldRegion(held, mask, "clean" if memory_mode == "fixed" else "renoise"))
    return cond


def generate_latents(wan, cond: C.WanConditioning, settings: S.SamplerSettings, shape: tuple,
                     normalized: bool = False) -> torch.Tensor:
    """Sample one shot with memory through the one Wan sampler. Returns the shot's latents only (memory dropped)."""
    return S.sample(wan, cond, settings, shape, normalized=normalized)
