"""Rack focus / focal stack: sweep the focal plane from near to far over N frames.

The sweep is linear in inverse depth (1/d), the quantity blur is proportional to, so the blur of every
layer changes at an even rate and the motion looks steady. With no explicit range the sweep spans the
depth map's own robust near/far (0.5 % / 99.5 % quantiles of inverse depth).
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from . import bokeh, defocus


def focus_sweep(near_inv: float, far_inv: float, frames: int) -> torch.Tensor:
    """F focal-plane inverse depths from near_inv to far_inv, evenly spaced in 1/d."""
    if frames < 1:
        raise ValueError("frames must be >= 1")
    if frames == 1:
        return torch.tensor([near_inv], dtype=torch.float32)
    return torch.linspace(float(near_inv), float(far_inv), int(frames), dtype=torch.float32)


def sweep_range(inv: torch.Tensor, near_distance: float = 0.0, far_distance: float = 0.0) -> tuple:
    """(near_inv, far_inv): explicit distances where given (> 0), else the map's robust extremes."""
    auto_far, auto_near = defocus.robust_range(inv)
    near_inv = defocus.focus_from_distance(near_distance) if near_distance > 0 else auto_near
    far_inv = defocus.focus_from_distance(far_distance) if far_distance > 0 else auto_far
    return near_inv, far_inv


def render_focal_stack(image: torch.Tensor, inv: torch.Tensor, frames: int, lens: bokeh.LensSettings,
                       near_distance: float = 0.0, far_distance: float = 0.0, reverse: bool = False,
                       focus_batch: Optional[int] = None,
                       on_frames_done: Optional[Callable[[int], None]] = None,
                       on_step: Optional[Callable[[], None]] = None) -> tuple:
    """image [H, W, 3], inverse depth [H, W] → (frames [N, H, W, 3], focus distances [N] in depth units)."""
    near_inv, far_inv = sweep_range(inv, near_distance, far_distance)
    if reverse:
        near_inv, far_inv = far_inv, near_inv
    focus = focus_sweep(near_inv, far_inv, frames)
    stack = bokeh.render(image, inv, focus, lens, focus_batch=focus_batch, on_step=on_step,
                         on_focus_done=on_frames_done)
    distances = torch.where(focus > 0, 1.0 / focus.clamp(min=1e-12), torch.full_like(focus, float("inf")))
    return stack, distances
