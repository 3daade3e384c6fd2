"""Flow-matching sampler for Wan transformers with held latent regions.

Shot Studio needs two things the stock pipelines do not give: latent regions that stay fixed while the rest
is sampled (StoryMem memory frames held clean; a background plate re-imposed outside boxes), and control over
what the transformer sees (extra channel conditioning `y`, VACE hints, frame positions, regional attention).
Everything here works on *normalised* Wan latents (the space the transformer sees), [B, C, T, h, w].

Wan convention: x_sigma = (1 - sigma) x0 + sigma * noise, the model predicts v = noise - x0, timestep = 1000 sigma,
Euler step x <- x + (sigma_next - sigma) v. High-noise expert (`transformer`) for t >= boundary * 1000, low-noise
expert (`transformer_2`) below, as in diffusers' Wan pipelines.
"""
from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Callable, ContextManager, Optional, Sequence

import torch

from ..common import runtime
from .rope import frame_positions as _frame_positions


def flow_sigmas(steps: int, shift: float) -> torch.Tensor:
    """Shifted flow-matching sigmas, steps+1 values from 1 down to 0 (Wan's `shift` schedule)."""
    s = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    s = shift * s / (1 + (shift - 1) * s)
    return s.float()


@dataclass
class HeldRegion:
    """Latents to hold during sampling where `mask` is 1.

    mode "clean": the held values are exactly `latents` at every model call and at the end (StoryMem memory).
    mode "renoise": the held values follow the ideal trajectory (1-s) latents + s noise, re-imposed after every
    step, and equal `latents` exactly at the end (inpainting-style plate keeping).
    """
    latents: torch.Tensor
    mask: torch.Tensor  # broadcastable to latents, values in {0, 1}
    mode: str = "clean"
    noise: Optional[torch.Tensor] = None

    def apply(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        m = self.mask.to(x.dtype)
        if self.mode == "clean" or sigma <= 0.0:
            target = self.latents.to(x.dtype)
        elif self.mode == "renoise":
            noise = self.noise if self.noise is not None else torch.zeros_like(self.latents)
            target = ((1.0 - sigma) * self.latents + sigma * noise).to(x.dtype)
        else:
            raise ValueError(f"unknown hold mode {self.mode!r}")
        return x * (1 - m) + target * m


@dataclass
class WanDenoiser:
    """Calls one or two Wan experts with CFG and the extra conditioning Shot Studio uses."""
    transformer: torch.nn.Module
    context: torch.Tensor                      # [B, L, text_dim] prompt embeddings
    context_null: Optional[torch.Tensor] = None
    guidance: float | tuple = 5.0              # float or (low-noise, high-noise) like Wan2.2
    transformer_2: Optional[torch.nn.Module] = None
    boundary_ratio: Optional[float] = None
    y: Optional[torch.Tensor] = None           # I2V channel conditioning [B, 20, T, h, w]
    image_embeds: Optional[torch.Tensor] = None
    vace_context: Optional[torch.Tensor] = None  # [B, 96, T, h, w] for WanVACETransformer3DModel
    vace_scale: float = 1.0
    positions: Optional[torch.Tensor] = None   # temporal RoPE position per latent frame
    clean_token_mask: Optional[torch.Tensor] = None  # [B, T, h, w] 1 = clean token (per-token timestep 0)
    attention_kwargs: Optional[dict] = None
    context_extra: dict = field(default_factory=dict)  # reserved for callers' bookkeeping
    calls: list = field(default_factory=list)  # (t, expert index) per call, for tests and logs
    # Model handles (VB_WAN): open_expert(i) -> context manager yielding expert i ready to run (VRAM manager,
    # LoRAs merged). Only one expert is open at a time; `transformer`/`transformer_2` may then be None.
    open_expert: Optional[Callable[[int], ContextManager]] = None
    has_second_expert: bool = False
    dtype: Optional[torch.dtype] = None
    wrap_expert: Optional[Callable[[torch.nn.Module], ContextManager]] = None  # e.g. regional attention
    batch_cfg: bool = True  # cond + uncond in one forward when their contexts have the same shape (lossless)
    _stack: Optional[ExitStack] = None
    _open: Optional[tuple] = None

    def _two_experts(self) -> bool:
        return self.boundary_ratio is not None and (self.transformer_2 is not None or self.has_second_expert)

    def expert_for(self, t: float):
        idx = 0 if not self._two_experts() or t >= self.boundary_ratio * 1000.0 else 1
        if self.open_expert is None and self.wrap_expert is None:
            return (self.transformer if idx == 0 else self.transformer_2), idx
        if self._open is None or self._open[0] != idx:
            self.close()
            self._stack = ExitStack()
            if self.open_expert is not None:
                model = self._stack.enter_context(self.open_expert(idx))
            else:
                model = self.transformer if idx == 0 else self.transformer_2
            if self.wrap_expert is not None:
                self._stack.enter_context(self.wrap_expert(model))
            self._open = (idx, model)
        return self._open[1], idx

    def close(self):
        if self._stack is not None:
            self._stack.close()
        self._stack, self._open = None, None

    def _timestep(self, model, x: torch.Tensor, t: float) -> torch.Tensor:
        b = x.shape[0]
        if self.clean_token_mask is None:
            return torch.full((b,), t, device=x.device, dtype=torch.float32)
        p_t, p_h, p_w = model.config.patch_size
        m = self.clean_token_mask.to(x.device).float()
        m = m[:, ::p_t, ::p_h, ::p_w].flatten(1)
        return (1.0 - m) * t  # Wan2.2 TI2V-style per-token timesteps

    def _forward(self, model, x, t, context):
        b = x.shape[0]
        inp = x if self.y is None else torch.cat([x, self.y.to(x).expand(b, -1, -1, -1, -1)], dim=1)
        dtype = self.dtype or next(model.parameters()).dtype
        ts = self._timestep(model, x, t)
        kwargs = dict(hidden_states=inp.to(dtype), timestep=ts.expand(b, *ts.shape[1:]) if ts.shape[0] == 1 else ts,
                      encoder_hidden_states=context.to(dtype), return_dict=False)
        if self.image_embeds is not None:
            kwargs["encoder_hidden_states_image"] = self.image_embeds.to(dtype).expand(b, -1, -1)
        if self.vace_context is not None:
            n = len(model.config.vace_layers)
            kwargs["control_hidden_states"] = self.vace_context.to(dtype).expand(b, -1, -1, -1, -1)
            kwargs["control_hidden_states_scale"] = torch.full((n,), float(self.vace_scale), device=x.device)
        if self.attention_kwargs:
            kwargs["attention_kwargs"] = self.attention_kwargs
        with _frame_positions(model, self.positions):
            return model(**kwargs)[0].float()

    def __call__(self, x: torch.Tensor, t: float) -> torch.Tensor:
        model, idx = self.expert_for(t)
        self.calls.append((t, idx))
        g = self.guidance
        if isinstance(g, (tuple, list)):
            g = g[1] if idx == 0 and self._two_experts() else g[0]
        if self.context_null is None or g == 1.0:
            return self._forward(model, x, t, self.context)
        if self.batch_cfg and self.context.shape == self.context_null.shape and x.shape[0] == 1:
            both = self._forward(model, torch.cat([x, x]), t, torch.cat([self.context, self.context_null]))
            cond, uncond = both.chunk(2)
        else:
            cond = self._forward(model, x, t, self.context)
            uncond = self._forward(model, x, t, self.context_null)
        return uncond + g * (cond - uncond)


def sample_flow(denoise: Callable[[torch.Tensor, float], torch.Tensor], noise: torch.Tensor, steps: int,
                shift: float = 5.0, holds: Sequence[HeldRegion] = (), denoise_strength: float = 1.0,
                init_latents: Optional[torch.Tensor] = None,
                on_step: Optional[Callable[[int, torch.Tensor], None]] = None, scheduler=None) -> torch.Tensor:
    """Flow-matching sampling with held regions. Returns the final latents (all frames).

    scheduler None = Euler on Wan's shifted sigmas; or a diffusers flow scheduler (UniPC / DPM++ / Euler with flow
    sigmas and the shift set), whose `sigmas` give the noise level the held regions are re-imposed at.
    denoise_strength < 1 starts from `init_latents` noised to the matching sigma (video-to-video).
    """
    if scheduler is not None:
        scheduler.set_timesteps(steps, device=noise.device)
        sigmas = scheduler.sigmas.detach().float().cpu()
        timesteps = scheduler.timesteps
    else:
        sigmas = flow_sigmas(steps, shift)
        timesteps = None
    start = 0
    if denoise_strength < 1.0:
        if init_latents is None:
            raise ValueError("denoise_strength < 1 needs init_latents")
        start = min(int(round(steps * (1.0 - denoise_strength))), steps - 1)
        if scheduler is not None and hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(start)
    s0 = float(sigmas[start])
    x = noise.float() if init_latents is None else (1 - s0) * init_latents.float() + s0 * noise.float()
    for h in holds:
        if h.mode == "renoise" and h.noise is None:
            h.noise = noise
        x = h.apply(x, s0)
    bar = runtime.ProgressBar(steps - start)
    try:
        for i in range(start, steps):
            runtime.check_interrupt()
            s, s_next = float(sigmas[i]), float(sigmas[i + 1])
            t = float(timesteps[i]) if timesteps is not None else s * 1000.0
            with torch.no_grad():
                v = denoise(x, t)
            if scheduler is None:
                x = x + (s_next - s) * v
            else:
                x = scheduler.step(v, timesteps[i], x, return_dict=False)[0].float()
            for h in holds:
                x = h.apply(x, s_next)
            if on_step is not None:
                on_step(i, x)
            bar.update(1)
    finally:
        close = getattr(denoise, "close", None)
        if close is not None:
            close()
    return x


def denoiser_options(run_options: Optional[dict]) -> dict:
    """The WanDenoiser fields a `run_options` dict may set (see shots.bridge.run_options)."""
    keys = ("open_expert", "has_second_expert", "dtype")
    return {k: v for k, v in (run_options or {}).items() if k in keys and v is not None}
