"""A training-free step cache for the Wan sampler (EasyCache-style, H-EmbodVis/EasyCache; cf. MagCache).

Idea (EasyCache, arXiv 2507.02860): the DiT's residual `r = output − input` changes slowly over most of the
trajectory, and the *transformation rate* `k = ‖Δoutput‖ / ‖Δinput‖` measured between two computed steps is
stable. Before a forward, the relative change it would bring is estimated from the input alone,
`k · mean|x_t − x_prev| / mean|output_last|`, and accumulated since the last computed forward; while the sum
stays below `threshold`, the forward is skipped and `x_t + r_last` is used instead. A computed step resets it.

Differences from the paper's code, on purpose:
- the decision is made on the *guided* prediction (cond and uncond together): with CFG both passes are skipped
  or computed together, and one residual (a linear combination of theirs) is cached;
- `k` compares the output change with the input change over the *same* interval (last computed step → this one).

Never skipped: the first `warmup` steps (≈ 20 % as the paper's 10 of 50; at least 2 so `k` exists) and the last
`keep_last` steps (the final detail). `threshold <= 0` never skips (bit-identical to no cache). Typical: 0.05
(≈ 1.5× fewer forwards at 50 steps), 0.1 (≈ 2×), 0.2 (≈ 3×); lossy, opt-in, its skip ratio is reported.
"""
from __future__ import annotations

import math
from typing import Optional

import torch


class StepCache:
    """The sampler asks `reuse(i, x)` before a step's forward (a prediction, or None = compute) and calls
    `store(x, out)` after a computed one. `reset()` at an expert switch (a residual of one DiT does not transfer)."""

    def __init__(self, threshold: float, steps: int, warmup: Optional[int] = None, keep_last: int = 1,
                 audit: bool = False):
        self.threshold = float(threshold)
        self.steps = int(steps)
        self.warmup = max(2, math.ceil(0.2 * steps)) if warmup is None else int(warmup)
        self.keep_last = int(keep_last)
        self.audit = audit          # the sampler also computes skipped steps and records the cache's error
        self.skipped: list = []     # step indices served from the cache
        self.errors: list = []      # audit: ‖cached − computed‖ / ‖computed‖ at skipped steps
        self.reset()

    def reset(self) -> None:
        self.k = None               # transformation rate
        self.residual = None        # output − input of the last computed step
        self.last_x = self.last_out = None
        self.out_mean = None
        self.prev_x = None          # input of the previous step (computed or not)
        self.accumulated = 0.0

    @property
    def enabled(self) -> bool:
        return self.threshold > 0

    def allowed(self, i: int) -> bool:
        """May step i (0-based, of `steps`) be served from the cache at all."""
        return self.enabled and self.warmup <= i < self.steps - self.keep_last

    def reuse(self, i: int, x: torch.Tensor) -> Optional[torch.Tensor]:
        prev, self.prev_x = self.prev_x, x
        if not self.allowed(i) or self.k is None or self.residual is None or prev is None:
            self.accumulated = 0.0
            return None
        change = float((x - prev).abs().mean()) * self.k / max(self.out_mean, 1e-12)
        self.accumulated += change
        if self.accumulated < self.threshold:
            self.skipped.append(i)
            return x + self.residual
        self.accumulated = 0.0
        return None

    def store(self, x: torch.Tensor, out: torch.Tensor) -> None:
        if not self.enabled:
            return
        if self.last_out is not None:
            dx = float((x - self.last_x).abs().mean())
            if dx > 0:
                self.k = float((out - self.last_out).abs().mean()) / dx
        self.last_x, self.last_out = x, out
        self.residual = out - x
        self.out_mean = float(out.abs().mean())
        self.accumulated = 0.0

    def record_error(self, cached: torch.Tensor, computed: torch.Tensor) -> None:
        self.errors.append(float((cached - computed).norm() / computed.norm().clamp(min=1e-12)))

    def stats(self) -> dict:
        out = {"step_cache": self.threshold, "skipped": len(self.skipped), "skipped_steps": list(self.skipped),
               "skip_ratio": len(self.skipped) / max(1, self.steps)}
        if self.errors:
            out["cache_rel_err"] = sum(self.errors) / len(self.errors)
        return out
