"""FlashPortrait long-video sampling: flow-matching Euler over latent frames in sliding context windows, each
window conditioned on the reference portrait (I2V mask + latent) and on its own frames' expression tokens, with
separate text CFG and expression CFG, overlapping predictions blended linearly (`performance.blend_windows`).

Hook-up to the one Wan runtime (`wan/`, being refactored): this file's `_window_prediction` is what the runtime's
`sample()` calls per model evaluation once FlashPortrait is registered as a model adapter
(`flashportrait.patch_expression_attention` on the runtime's model copy, `ExpressionState.tokens` set from a
conditioning builder that slices `tokens_for_window`). Until the runtime can blend sliding windows and apply two
guidance scales, `generate` keeps this window loop, but takes its scheduler and latent normalisation from `wan/`.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Optional

import torch

from ..wan import conditioning as C
from ..wan import sampler as S
from . import flashportrait as fp
from . import performance

MEMORY_MODES = ("full", "model_cpu_offload", "sequential_cpu_offload")


@torch.no_grad()
def i2v_condition(vae, image: torch.Tensor, latent_frames: int) -> torch.Tensor:
    """[1, 4+C, T, h, w]: mask (1 on the first pixel frame, folded ×4) + normalised latents of (image, zeros…)."""
    h, w = image.shape[0], image.shape[1]
    frames = 4 * (latent_frames - 1) + 1
    video = torch.zeros(1, 3, frames, h, w, dtype=vae.dtype)
    video[:, :, 0] = image.permute(2, 0, 1).to(vae.dtype) * 2 - 1
    lat = C.normalize(vae, vae.encode(video).latent_dist.mode())
    lh, lw = lat.shape[-2:]
    mask = torch.zeros(1, 4, latent_frames, lh, lw, dtype=lat.dtype)
    mask[:, :, 0] = 1
    return torch.cat([mask, lat], 1)


def tokens_for_window(tokens_pix: torch.Tensor, start: int, end: int):
    """Expression tokens of latent frames [start, end): pixel frames 4·start … 4·(end−1), per latent frame."""
    a, b = 4 * start, 4 * (end - 1) + 1
    # A window starting mid-clip is a fresh I2V clip to the model: its first latent frame is a single-frame
    # group, so it takes that group's first driving frame (as upstream slices 4·start … 4·end+1).
    return fp.per_latent_frame(tokens_pix[:, a:b])


@contextlib.contextmanager
def memory_mode(model, mode: str, device: torch.device):
    """full: the model stays on `device`; model_cpu_offload: on `device` only while sampling; sequential:
    weights stream to `device` layer by layer (accelerate hooks) — lowest VRAM, slowest."""
    if mode not in MEMORY_MODES:
        raise ValueError(f"memory mode must be one of {MEMORY_MODES}, not {mode!r}")
    if mode == "sequential_cpu_offload":
        try:
            from accelerate import cpu_offload
            from accelerate.hooks import remove_hook_from_submodules
        except ImportError as e:
            raise ValueError("sequential_cpu_offload needs accelerate (pip install accelerate)") from e
        model.to("cpu")
        cpu_offload(model, execution_device=device)
        try:
            yield
        finally:
            remove_hook_from_submodules(model)
        return
    model.to(device)
    try:
        yield
    finally:
        if mode == "model_cpu_offload":
            model.to("cpu")


@torch.no_grad()
def generate(model, state: fp.ExpressionState, vae, image: torch.Tensor, text: torch.Tensor,
             negative: torch.Tensor, image_tokens: torch.Tensor, tokens_pix: torch.Tensor, frames_out: int, *,
             steps: int = 30, shift: float = 5.0, text_cfg: float = 5.0, emo_cfg: float = 4.0,
             context_size: int = 21, context_overlap: int = 8, seed: int = 0, mode: str = "full",
             device: Optional[torch.device] = None,
             on_step: Optional[Callable[[int, int], None]] = None) -> torch.Tensor:
    """Frames [frames_out, H, W, 3] of the portrait `image` [H,W,3] performing the expressions `tokens_pix`
    [1, F, 24, D] (one row per output frame, F ≥ 1). `text`/`negative` [1, 512, D_text], `image_tokens` the
    CLIP image context [1, N, D_img]."""
    device = device or torch.device("cpu")
    lat_t = performance.latent_frames_for(frames_out)
    need = 4 * (lat_t - 1) + 1
    if tokens_pix.shape[1] < need:  # hold the last expression over the padding frames Wan's 4k+1 adds
        tokens_pix = torch.cat([tokens_pix, tokens_pix[:, -1:].expand(-1, need - tokens_pix.shape[1], -1, -1)], 1)
    tokens_pix = tokens_pix[:, :need]
    size = min(context_size, lat_t)
    cond = i2v_condition(vae, image, size)
    h, w = cond.shape[-2:]
    gen = torch.Generator("cpu").manual_seed(int(seed))
    latents = torch.randn(1, cond.shape[1] - 4, lat_t, h, w, generator=gen)
    sched = S.make_scheduler("euler", shift)
    sched.set_timesteps(steps)
    windows = performance.context_windows(lat_t, size, min(context_overlap, size - 1))
    dtype = next(model.parameters()).dtype

    def evaluate(x, t, ctx, tok, mask, scale):
        state.tokens, state.mask, state.scale = tok, mask, scale
        return model(hidden_states=torch.cat([x, cond[:, :, :x.shape[2]]], 1).to(device, dtype),
                     timestep=t.expand(1).to(device), encoder_hidden_states=ctx.to(device, dtype),
                     encoder_hidden_states_image=image_tokens.to(device, dtype), return_dict=False)[0].float().cpu()

    with memory_mode(model, mode, device):
        for i, t in enumerate(sched.timesteps):
            def window_prediction(start, end, t=t):
                x = latents[:, :, start:end]
                tok, mask = tokens_for_window(tokens_pix, start, end)
                full = evaluate(x, t, text, tok, mask, 1.0)
                if text_cfg == 1.0 and emo_cfg == 1.0:
                    return full
                no_emo = evaluate(x, t, text, tok, mask, 0.0)
                uncond = evaluate(x, t, negative, tok, mask, 0.0)
                # separate guidance: text moves uncond → text-only, expression moves text-only → full
                return uncond + text_cfg * (no_emo - uncond) + emo_cfg * (full - no_emo)
            pred = performance.blend_windows(window_prediction, lat_t, windows)
            latents = sched.step(pred, t, latents).prev_sample
            if on_step is not None:
                on_step(i + 1, steps)
    state.tokens = state.mask = None
    video = vae.decode(C.denormalize(vae, latents).to(vae.dtype)).sample  # [1,3,4k+1,H,W]
    frames = ((video[0].permute(1, 2, 3, 0).float() + 1) / 2).clamp(0, 1)
    return frames[:frames_out]
