"""Where a node runs: inside real ComfyUI, inside VibeBoard's embedded executor, or in a plain script.

Nodes call `progress_bar(total)` and `check_interrupt()`; this module forwards them to the host.
The embedded executor installs its hooks with `set_host_hooks`; inside ComfyUI we use `comfy.*` lazily.
"""
from __future__ import annotations

import threading
from typing import Callable, Optional

_local = threading.local()


class InterruptProcessing(Exception):
    """Raised inside a node when the user interrupted the run (ComfyUI's InterruptProcessingException twin)."""


class NodeInputError(ValueError):
    """Bad input given to a node: the message names the node and the input."""

    def __init__(self, node: str, input_name: str, message: str):
        self.node = node
        self.input_name = input_name
        super().__init__(f"{node}: input '{input_name}': {message}")


def set_host_hooks(progress: Optional[Callable[[int, int, object], None]],
                   interrupt: Optional[Callable[[], bool]]) -> None:
    """Called by the embedded executor around each node call (per thread)."""
    _local.progress = progress
    _local.interrupt = interrupt


def _embedded_hooks():
    return getattr(_local, "progress", None), getattr(_local, "interrupt", None)


def check_interrupt() -> None:
    """Raise InterruptProcessing if the host asked to stop. Cheap: call it inside long loops."""
    _, interrupt = _embedded_hooks()
    if interrupt is not None:
        if interrupt():
            raise InterruptProcessing("interrupted")
        return
    try:
        import comfy.model_management as mm  # only present inside ComfyUI
    except Exception:
        return
    mm.throw_exception_if_processing_interrupted()


class ProgressBar:
    """Same surface as comfy.utils.ProgressBar: update(n) and update_absolute(value, total, preview)."""

    def __init__(self, total: int):
        self.total = max(int(total), 1)
        self.current = 0
        self._comfy = None
        progress, _ = _embedded_hooks()
        self._hook = progress
        if progress is None:
            try:
                import comfy.utils
                self._comfy = comfy.utils.ProgressBar(self.total)
            except Exception:
                self._comfy = None

    def update_absolute(self, value: int, total: Optional[int] = None, preview=None) -> None:
        if total is not None:
            self.total = max(int(total), 1)
        self.current = min(int(value), self.total)
        if self._hook is not None:
            self._hook(self.current, self.total, preview)
        elif self._comfy is not None:
            self._comfy.update_absolute(self.current, self.total, preview)
        check_interrupt()

    def update(self, value: int = 1) -> None:
        self.update_absolute(self.current + value)


def progress_bar(total: int) -> ProgressBar:
    return ProgressBar(total)
