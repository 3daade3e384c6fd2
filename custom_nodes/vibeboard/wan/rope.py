"""Wan 3D RoPE at chosen positions: the one RoPE module every Wan-based model uses.

diffusers' `WanRotaryPosEmbed` reads its table at rows 0..F-1, so frames can only sit at contiguous, non-negative
temporal positions. StoryMem puts memory keyframes at negative positions {-M*S, ..., -S} before the shot's frames
{0..T-1}; Spatia places reference frames at shifted rows (height offset h..2h). `PositionedWanRope` computes the
temporal cos/sin from the positions themselves (same formula and dtype path as diffusers, so with positions
0..F-1 the result is bit-identical) and reads height/width from the stock table unless per-frame offsets are set.

Usage: `with frame_positions(transformer, positions, h_offsets=None, w_offsets=None): ...` (installs once).
"""
from __future__ import annotations

import contextlib
from typing import Optional, Sequence

import torch
from torch import nn


def rope_angles(positions: torch.Tensor, dim: int, theta: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin [len(positions), dim] with diffusers' `get_1d_rotary_pos_embed(use_real, repeat_interleave_real)` layout."""
    freqs_dtype = torch.float32 if torch.backends.mps.is_available() else torch.float64
    inv = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=freqs_dtype, device=positions.device)[: dim // 2] / dim))
    angles = torch.outer(positions.to(freqs_dtype), inv)
    cos = angles.cos().repeat_interleave(2, dim=1).float()
    sin = angles.sin().repeat_interleave(2, dim=1).float()
    return cos, sin


class PositionedWanRope(nn.Module):
    """Drop-in replacement for `WanRotaryPosEmbed` that honours `frame_positions` / `h_offsets` / `w_offsets`."""

    def __init__(self, original: nn.Module, theta: float = 10000.0):
        super().__init__()
        self.original = original
        self.theta = theta
        self.frame_positions: Optional[torch.Tensor] = None
        self.h_offsets: Optional[torch.Tensor] = None   # per latent frame: added to the row index
        self.w_offsets: Optional[torch.Tensor] = None   # per latent frame: added to the column index
        self.last_frame_positions: Optional[torch.Tensor] = None  # what the last forward used (tests, debugging)

    @property
    def patch_size(self):
        return self.original.patch_size

    def _spatial(self, part_cos, part_sin, n: int, ppf: int, offsets, dim: int):
        """[ppf, n, dim] cos/sin: the stock table, or angles at index + offset per frame."""
        if offsets is None:
            return part_cos[:n][None].expand(ppf, -1, -1), part_sin[:n][None].expand(ppf, -1, -1)
        off = torch.as_tensor(offsets, dtype=torch.float64).flatten()
        if off.numel() != ppf:
            raise ValueError(f"{off.numel()} spatial offsets for {ppf} latent frames")
        idx = (torch.arange(n, dtype=torch.float64)[None, :] + off[:, None]).flatten()
        c, s = rope_angles(idx.to(part_cos.device), dim, self.theta)
        return c.to(part_cos.dtype).view(ppf, n, -1), s.to(part_sin.dtype).view(ppf, n, -1)

    def forward(self, hidden_states: torch.Tensor):
        positions = self.frame_positions
        _, _, num_frames, height, width = hidden_states.shape
        p_t, p_h, p_w = self.original.patch_size
        ppf, pph, ppw = num_frames // p_t, height // p_h, width // p_w
        if positions is None and self.h_offsets is None and self.w_offsets is None:
            self.last_frame_positions = torch.arange(ppf)
            return self.original(hidden_states)
        o = self.original
        if positions is None:
            positions = torch.arange(ppf)
        positions = torch.as_tensor(positions).flatten()
        if positions.numel() != ppf:
            raise ValueError(f"frame_positions has {positions.numel()} entries but the latent has {ppf} frames")
        self.last_frame_positions = positions.detach().cpu().clone()
        split = [o.t_dim, o.h_dim, o.w_dim]
        cos_parts = o.freqs_cos.split(split, dim=1)
        sin_parts = o.freqs_sin.split(split, dim=1)
        cos_t, sin_t = rope_angles(positions.to(o.freqs_cos.device), o.t_dim, self.theta)
        cos_t, sin_t = cos_t.to(o.freqs_cos.dtype), sin_t.to(o.freqs_sin.dtype)
        ch, sh = self._spatial(cos_parts[1], sin_parts[1], pph, ppf, self.h_offsets, o.h_dim)
        cw, sw = self._spatial(cos_parts[2], sin_parts[2], ppw, ppf, self.w_offsets, o.w_dim)

        def grid(ft, fh, fw):
            ft = ft.view(ppf, 1, 1, -1).expand(ppf, pph, ppw, -1)
            fh = fh.view(ppf, pph, 1, -1).expand(ppf, pph, ppw, -1)
            fw = fw.view(ppf, 1, ppw, -1).expand(ppf, pph, ppw, -1)
            return torch.cat([ft, fh, fw], dim=-1).reshape(1, ppf * pph * ppw, 1, -1)

        return grid(cos_t, ch, cw), grid(sin_t, sh, sw)


def install_positioned_rope(transformer: nn.Module) -> PositionedWanRope:
    """Swap the transformer's RoPE for the positioned one (idempotent; identical output until positions are set)."""
    rope = transformer.rope
    if isinstance(rope, PositionedWanRope):
        return rope
    wrapped = PositionedWanRope(rope)
    transformer.rope = wrapped
    return wrapped


@contextlib.contextmanager
def frame_positions(transformers: Sequence[nn.Module] | nn.Module, positions: Optional[torch.Tensor],
                    h_offsets=None, w_offsets=None):
    """Within the block, every given transformer places latent frame i at temporal position positions[i]
    (and shifts its rows / columns by h_offsets[i] / w_offsets[i])."""
    if isinstance(transformers, nn.Module):
        transformers = [transformers]
    ropes = [install_positioned_rope(t) for t in transformers if t is not None]
    previous = [(r.frame_positions, r.h_offsets, r.w_offsets) for r in ropes]
    try:
        for r in ropes:
            r.frame_positions = None if positions is None else torch.as_tensor(positions)
            r.h_offsets, r.w_offsets = h_offsets, w_offsets
        yield ropes
    finally:
        for r, (p, h, w) in zip(ropes, previous):
            r.frame_positions, r.h_offsets, r.w_offsets = p, h, w


def memory_frame_positions(num_memory: int, num_frames: int, gap: int) -> torch.Tensor:
    """StoryMem layout: memory m (0-based, oldest first) at -(M-m)*gap, shot frames at 0..F-1.

    gap=0 reproduces the released code's contiguous layout (memory at 0..M-1, shot at M..M+F-1).
    """
    if gap <= 0:
        return torch.arange(num_memory + num_frames)
    mem = -(torch.arange(num_memory, 0, -1)) * gap
    return torch.cat([mem, torch.arange(num_frames)])
