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
- "fixed" (default): held clean at every step, so they stay exactly what was injected;
- "renoise": held on their ideal trajectory (1 - sigma) memory + sigma noise, re-imposed every step (what a model
  trained on noised memory frames sees; ends exactly at the memory latents);
- "free": the released inference loop (memory region starts as noise and is sampled freely, conditioned only
  through y, then discarded).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from . import wan_io
from .rope import memory_frame_positions
from .sampling import HeldRegion, WanDenoiser, denoiser_options, sample_flow

MOTION_FRAMES = 5  # MM2V: last 5 frames of the previous shot


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
    M = memory_latents.shape[2]
    _, _, T, h, w = shot_cond_latents.shape
    if wan_io.latent_frames(num_frames) != T:
        raise ValueError(f"num_frames {num_frames} gives {wan_io.latent_frames(num_frames)} latent frames, "
                         f"the shot condition has {T}")
    mask = storymem_mask(M, num_frames, cond_pixel_frames, h, w, device=shot_cond_latents.device)
    lat = torch.cat([memory_latents.to(shot_cond_latents), shot_cond_latents], dim=2)
    return torch.cat([mask.to(lat.dtype), lat], dim=1)


def shot_condition(vae, num_frames: int, height: int, width: int, first_frame: Optional[torch.Tensor] = None,
                   motion_frames: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, int]:
    """(u latents [1, 16, T, h, w], number of given pixel frames). Frames are IMAGE [K, H, W, 3] 0..1."""
    video = torch.zeros(1, 3, num_frames, height, width)
    given = 0
    src = motion_frames if motion_frames is not None else first_frame
    if src is not None:
        src = wan_io.resize_images(src[-MOTION_FRAMES:] if motion_frames is not None else src[:1], height, width)
        given = src.shape[0]
        video[:, :, :given] = wan_io.image_to_video(src)[:, :, :given]
    return wan_io.encode_video(vae, video), given


def encode_memory(vae, bank, height: int, width: int, cache: bool = True) -> torch.Tensor:
    """Memory keyframes -> [1, 16, M, h, w], one latent frame each; reuses latents cached at this size."""
    if len(bank) == 0:
        return torch.zeros(1, int(getattr(vae.config, "z_dim", 16)), 0, height // 8, width // 8)
    z_dim = int(getattr(vae.config, "z_dim", 16))
    todo = [i for i, e in enumerate(bank.entries)
            if not cache or e.latent is None or tuple(e.latent_size or ()) != (height, width)
            or e.latent.shape[0] != z_dim]
    fresh = {}
    if todo:
        imgs = torch.stack([wan_io.resize_images(bank.entries[i].image_float()[None], height, width)[0] for i in todo])
        lat = wan_io.encode_images_as_frames(vae, imgs.permute(0, 3, 1, 2) * 2 - 1)[0]  # [16, n, h, w]
        for j, i in enumerate(todo):
            # cached in host RAM like latents read from disk: a CUDA copy here made torch.stack mix devices
            fresh[i] = lat[:, j].to("cpu", torch.float32, copy=True)
            if cache:
                bank.entries[i].latent = fresh[i]
                bank.entries[i].latent_size = (height, width)
    lats = [fresh[i] if i in fresh else e.latent for i, e in enumerate(bank.entries)]
    return torch.stack(lats, dim=1).unsqueeze(0).float()


@dataclass
class StoryMemSettings:
    steps: int = 40
    shift: float = 5.0
    guidance: float | tuple = 3.5
    rope_gap: int = 5            # S; 0 = contiguous positions (released code before the fix)
    memory_mode: str = "fixed"   # fixed | renoise | free
    seed: int = 0


def generate_latents(transformer, context, memory_latents: torch.Tensor, shot_cond: torch.Tensor, num_frames: int,
                     cond_pixel_frames: int, settings: StoryMemSettings, context_null=None, transformer_2=None,
                     boundary_ratio: Optional[float] = 0.9, image_embeds=None, denoiser_hook=None,
                     run_options: Optional[dict] = None) -> torch.Tensor:
    """Sample one shot with memory. Returns the shot's latents only, [1, 16, T, h, w] (normalised)."""
    M = memory_latents.shape[2]
    _, C, T, h, w = shot_cond.shape
    y = build_condition(memory_latents, shot_cond, num_frames, cond_pixel_frames)
    positions = memory_frame_positions(M, T, settings.rope_gap)
    den = WanDenoiser(transformer=transformer, context=context, context_null=context_null, guidance=settings.guidance,
                      transformer_2=transformer_2, boundary_ratio=boundary_ratio,
                      y=y, image_embeds=image_embeds, positions=positions, **denoiser_options(run_options))
    if denoiser_hook is not None:
        denoiser_hook(den)
    gen = torch.Generator().manual_seed(int(settings.seed))
    noise = torch.randn(1, C, M + T, h, w, generator=gen).to(shot_cond.device)
    holds = []
    if settings.memory_mode not in ("fixed", "renoise", "free"):
        raise ValueError(f"memory_mode must be 'fixed', 'renoise' or 'free', got {settings.memory_mode!r}")
    if M > 0 and settings.memory_mode != "free":
        held = torch.zeros_like(noise)
        held[:, :, :M] = memory_latents.to(held)
        mask = torch.zeros(1, 1, M + T, 1, 1, device=noise.device)
        mask[:, :, :M] = 1
        mode = "clean" if settings.memory_mode == "fixed" else "renoise"
        holds.append(HeldRegion(held, mask, mode, noise=noise))
    x = sample_flow(den, noise, settings.steps, settings.shift, holds=holds,
                    scheduler=(run_options or {}).get("scheduler"))
    return x[:, :, M:]
