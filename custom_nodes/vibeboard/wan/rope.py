"""Wan 3D RoPE at chosen positions: negative / shifted frame indices and per-frame spatial offsets.

Memory and reference frames placed before a shot (StoryMem's negative temporal positions, Spatia's reference
frames at shifted rows, AniX-style views) need RoPE positions other than 0..T-1. diffusers' WanRotaryPosEmbed
reads a table indexed from 0; this module computes the same cos/sin for any position, so with default positions
it reproduces diffusers exactly (tested) and with custom ones it shifts only what you ask.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Optional, Sequence

import torch
import torch.nn as nn


def _angles(positions: torch.Tensor, dim: int, theta: float) -> tuple:
    inv = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    ang = torch.outer(positions.to(torch.float64), inv)
    return ang.cos().repeat_interleave(2, dim=1).float(), ang.sin().repeat_interleave(2, dim=1).float()


class PositionedRope(nn.Module):
    """Drop-in for `model.rope`: frame f uses temporal position t_positions[f] and spatial offsets
    (h_offsets[f], w_offsets[f]) added to its row/column indices."""

    def __init__(self, base: nn.Module, t_positions: Optional[Sequence[float]] = None,
                 h_offsets: Optional[Sequence[float]] = None, w_offsets: Optional[Sequence[float]] = None,
                 theta: float = 10000.0):
        super().__init__()
        self.t_dim, self.h_dim, self.w_dim = base.t_dim, base.h_dim, base.w_dim
        self.patch_size = base.patch_size
        self.theta = theta
        self.t_positions, self.h_offsets, self.w_offsets = t_positions, h_offsets, w_offsets

    def forward(self, hidden_states: torch.Tensor):
        _, _, frames, height, width = hidden_states.shape
        p_t, p_h, p_w = self.patch_size
        ppf, pph, ppw = frames // p_t, height // p_h, width // p_w
        t_pos = torch.arange(ppf, dtype=torch.float64) if self.t_positions is None else \
            torch.tensor(list(self.t_positions), dtype=torch.float64)
        if t_pos.numel() != ppf:
            raise ValueError(f"{t_pos.numel()} temporal positions for {ppf} latent frames")
        h_off = torch.zeros(ppf) if self.h_offsets is None else torch.tensor(list(self.h_offsets), dtype=torch.float64)
        w_off = torch.zeros(ppf) if self.w_offsets is None else torch.tensor(list(self.w_offsets), dtype=torch.float64)
        tc, ts = _angles(t_pos, self.t_dim, self.theta)                                     # [F, t_dim]
        rows = torch.arange(pph, dtype=torch.float64)[None, :] + h_off[:, None].double()     # [F, H]
        cols = torch.arange(ppw, dtype=torch.float64)[None, :] + w_off[:, None].double()     # [F, W]
        hc, hs = (a.view(ppf, pph, -1) for a in _angles(rows.flatten(), self.h_dim, self.theta))
        wc, wsn = (a.view(ppf, ppw, -1) for a in _angles(cols.flatten(), self.w_dim, self.theta))
        shape = (ppf, pph, ppw)

        def grid(t, h, w):
            return torch.cat([t[:, None, None, :].expand(*shape, -1), h[:, :, None, :].expand(*shape, -1),
                              w[:, None, :, :].expand(*shape, -1)], dim=-1).reshape(1, ppf * pph * ppw, 1, -1)
        device = hidden_states.device
        return grid(tc, hc, wc).to(device), grid(ts, hs, wsn).to(device)


@contextmanager
def positions(model: nn.Module, t_positions=None, h_offsets=None, w_offsets=None):
    """Temporarily give `model` (a Wan DiT) custom RoPE positions; restores diffusers' module after."""
    base = model.rope
    model.rope = PositionedRope(base, t_positions, h_offsets, w_offsets)
    try:
        yield model
    finally:
        model.rope = base


def memory_positions(num_memory: int, num_frames: int, gap: int) -> list:
    """StoryMem-style layout: memory latents at −M·gap … −gap, then the shot at 0 … T−1."""
    return [-(num_memory - i) * gap for i in range(num_memory)] + list(range(num_frames))
