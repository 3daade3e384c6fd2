"""Sliding context windows over latent frames, with linear blending where windows overlap.

The one home of window scheduling and blending: the Wan sampler (`sampler.sample`, when a conditioning builder
sets `WanConditioning.windows`) and Character Foundry's audio segments (`foundry/performance.plan_segments`) both
use it. A video longer than the model's context is sampled window by window at every step; each window is a
clip of its own to the model (its own conditioning, from the builder's `condition` callback), and the
predictions of overlapping windows are cross-faded linearly, so no seam is a hard cut (FlashPortrait's long-video
scheme, `wan/pipeline/pipeline_wan_long.py` upstream).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import torch


def context_windows(length: int, size: int, overlap: int) -> List[Tuple[int, int]]:
    """[(start, end)] windows of `size` covering range(length), consecutive windows sharing `overlap` frames;
    the last window is aligned to the end (its overlap with the previous one may be larger)."""
    if length <= size:
        return [(0, length)]
    if not 0 <= overlap < size:
        raise ValueError(f"context overlap {overlap} must be ≥ 0 and smaller than the window ({size})")
    stride = size - overlap
    out = [(s, s + size) for s in range(0, length - size, stride)]
    out.append((length - size, length))
    return out


def blend_windows(predict: Callable[[int, int], torch.Tensor], length: int, windows: Sequence[Tuple[int, int]],
                  dim: int = 2, blend: bool = True) -> torch.Tensor:
    """Run `predict(start, end)` per window (tensors with `end-start` frames along `dim`) and join them: in an
    overlap of n frames the later window weighs j/(n−1) at its j-th frame, the earlier result the rest.
    `blend=False`: the later window simply overwrites the overlap."""
    out, covered = None, 0
    for start, end in windows:
        pred = predict(start, end)
        if out is None:
            shape = list(pred.shape)
            shape[dim] = length
            out = pred.new_zeros(shape)
        n = max(0, covered - start) if blend else 0
        if n:
            w = torch.arange(n, dtype=pred.dtype, device=pred.device) / max(n - 1, 1)
            w = w.view(*([1] * dim), n, *([1] * (pred.dim() - dim - 1)))
            old = out.narrow(dim, start, n)
            out.narrow(dim, start, n).copy_(pred.narrow(dim, 0, n) * w + old * (1 - w))
        out.narrow(dim, start + n, end - start - n).copy_(pred.narrow(dim, n, end - start - n))
        covered = max(covered, end)
    return out


# WanConditioning fields indexed by latent frame: (field name, frame dimension).
_FRAME_FIELDS = (("concat_latents", 2), ("vace_context", 2), ("clean_token_mask", 1), ("rope_positions", 0),
                 ("rope_h_offsets", 0), ("rope_w_offsets", 0))


def slice_frames(cond, start: int, end: int, length: int):
    """The conditioning of frames [start, end): every per-frame field that spans the whole clip (`length`
    frames) is cut to the window; fields already window-sized (a fresh I2V condition per window) stay."""
    changes = {}
    for name, dim in _FRAME_FIELDS:
        value = getattr(cond, name)
        if torch.is_tensor(value) and value.dim() > dim and value.shape[dim] == length:
            changes[name] = value.narrow(dim, start, end - start)
    return dataclasses.replace(cond, **changes) if changes else cond


@dataclass
class ContextWindows:
    """A conditioning builder's window schedule for the sampler.

    condition(cond, start, end, length) → the conditioning of one window (default `slice_frames`); a builder
    puts per-window inputs there, e.g. the window's own expression tokens in `cond.extra`.
    blend_from_step: steps before it join windows without blending (the later window overwrites), as
    FlashPortrait does at its first step."""
    size: int
    overlap: int
    condition: Optional[Callable] = None
    blend_from_step: int = 0

    def spans(self, length: int) -> List[Tuple[int, int]]:
        size = max(1, min(int(self.size), length))
        return context_windows(length, size, min(int(self.overlap), size - 1))

    def window_condition(self, cond, start: int, end: int, length: int):
        if self.condition is None:
            return slice_frames(cond, start, end, length)
        return self.condition(cond, start, end, length)
