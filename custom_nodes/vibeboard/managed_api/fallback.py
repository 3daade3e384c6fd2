"""Pod → API fallback: decide whether this worker can take a generation, and what apiMedic changes in a
workflow to send it to the API instead.

The decision is made where the work would run (inside the fallback node, before its local branch is
evaluated), from probes that need nothing but the machine: is there a CUDA GPU, is enough VRAM free, how deep
is this server's job queue. `VIBEBOARD_FORCE_API=1` (set by a worker or a remedy after an OOM the memory
ladder could not fix) forces the API; a workflow can also say mode=api or mode=pod outright.
"""
from __future__ import annotations

import os
import re
import sqlite3
from dataclasses import dataclass
from typing import Callable, List, Optional

MODES = ["auto", "pod", "api"]
FALLBACK_CLASSES = ("VBApiFallback",)
_probes: List[Callable[[], Optional[str]]] = []


@dataclass(frozen=True)
class Decision:
    use_api: bool
    reason: str


def register_probe(probe: Callable[[], Optional[str]]) -> None:
    """Extra check (e.g. a farm scheduler's view): return a reason string to send work to the API, else None."""
    _probes.append(probe)


def queue_depth() -> Optional[int]:
    """Jobs waiting in this server's SQLite queue (the job store next to the output folder), if there is one."""
    path = os.environ.get("VIBEBOARD_JOBS_DB")
    if not path:
        from ..common import runtime
        path = os.path.join(os.path.dirname(runtime.output_directory()), "vibeboard-jobs.sqlite")
    if not os.path.exists(path):
        return None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return int(db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'queued'").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return None


def _gpu_state():
    """(has_gpu, free_gib) of the current CUDA device; (False, 0) without one."""
    try:
        import torch
        if not torch.cuda.is_available():
            return False, 0.0
        free, _total = torch.cuda.mem_get_info()
        return True, free / 2 ** 30
    except Exception:
        return False, 0.0


def decide(mode: str, *, max_queue: int = 0, min_free_vram_gb: float = 0.0, gpu_state=None) -> Decision:
    forced = os.environ.get("VIBEBOARD_FORCE_API", "").strip().lower()
    if forced in ("1", "true", "yes", "api"):
        return Decision(True, "forced by VIBEBOARD_FORCE_API (e.g. OOM after the memory remedies)")
    if mode == "api":
        return Decision(True, "workflow option mode=api")
    if mode == "pod":
        return Decision(False, "workflow option mode=pod")
    has_gpu, free_gib = gpu_state if gpu_state is not None else _gpu_state()
    if not has_gpu:
        return Decision(True, "no CUDA GPU on this worker")
    if min_free_vram_gb > 0 and free_gib < min_free_vram_gb:
        return Decision(True, f"only {free_gib:.1f} GiB VRAM free (< {min_free_vram_gb:g} GiB)")
    if max_queue > 0:
        depth = queue_depth()
        if depth is not None and depth > max_queue:
            return Decision(True, f"pod queue has {depth} waiting jobs (> {max_queue})")
    for probe in _probes:
        reason = probe()
        if reason:
            return Decision(True, reason)
    return Decision(False, "pod can take it")


# --- remedy for apiMedic / the runner --------------------------------------------------------------

_OOM = re.compile(r"out of memory|OutOfMemoryError|CUDA error: out of memory|no CUDA GPUs are available|"
                  r"Torch not compiled with CUDA", re.I)


def needs_api(error: dict) -> bool:
    """Is a failed job's error one the API fallback fixes (the GPU is missing or full)?"""
    text = " ".join(str(error.get(k, "")) for k in ("exception_type", "exception_message"))
    return bool(_OOM.search(text))


def api_overrides(prompt: dict) -> dict:
    """`--set`-style overrides that switch every fallback node of an API-format workflow to the API."""
    return {f"{node_id}.mode": "api" for node_id, node in prompt.items()
            if isinstance(node, dict) and node.get("class_type") in FALLBACK_CLASSES}


def remedy(prompt: dict, error: dict) -> Optional[dict]:
    """The fallback remedy: overrides to re-run the job on the API, or None when it does not apply (no
    fallback node in the workflow, or an error the API would not fix)."""
    overrides = api_overrides(prompt)
    if not overrides or not needs_api(error):
        return None
    return overrides
