"""Refuse before allocating: a node estimates what an input combination costs (frames × height × width ×
channels × bytes) and stops with a NodeInputError over the budget, instead of letting the allocator or the
OOM killer decide (which takes the whole server, and every queued job, down with it).

The budget is one number of bytes for a single tensor a node is about to create:
`VIBEBOARD_MAX_TENSOR_MB` (environment) or `set_budget_bytes()` (the runner), else half of this machine's RAM.
"""
from __future__ import annotations

import math
import os
from typing import Optional, Sequence

from .runtime import NodeInputError

_state = {"budget": None}


def set_budget_bytes(value: Optional[int]) -> None:
    """The runner's override; None goes back to the environment / RAM default."""
    _state["budget"] = None if value is None else int(value)


def _total_ram() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX
        return 16 << 30


def budget_bytes() -> int:
    if _state["budget"] is not None:
        return _state["budget"]
    text = os.environ.get("VIBEBOARD_MAX_TENSOR_MB", "").strip()
    if text:
        try:
            return int(float(text) * (1 << 20))
        except ValueError:
            pass
    return _total_ram() // 2


def estimate_bytes(shape: Sequence[int], bytes_per_value: int = 4) -> int:
    """Exact integer product (a 10**6-frame request is not rounded into something small)."""
    return math.prod(max(int(d), 0) for d in shape) * int(bytes_per_value)


def _size(n: int) -> str:
    for unit, scale in (("TB", 1 << 40), ("GB", 1 << 30), ("MB", 1 << 20)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def check(node: str, input_name: str, shape: Sequence[int], what: str, bytes_per_value: int = 4) -> int:
    """Raise NodeInputError (naming node and input) when a tensor of `shape` would exceed the budget.
    Returns the estimate in bytes."""
    need = estimate_bytes(shape, bytes_per_value)
    limit = budget_bytes()
    if need > limit:
        dims = " × ".join(str(int(d)) for d in shape)
        raise NodeInputError(node, input_name, f"{what} would need {_size(need)} ({dims} × {bytes_per_value} bytes), "
                                               f"over the memory budget of {_size(limit)}; ask for fewer frames or a "
                                               "smaller size (the budget is VIBEBOARD_MAX_TENSOR_MB)")
    return need
