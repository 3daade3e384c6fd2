"""Which models this worker holds, for the farm's affinity routing.

Loader nodes call `models().ensure(name, load)`: a hit returns the held object, a miss loads it (evicting
the least recently used when the worker's model budget is full) and tells the farm. The VRAM manager's
registered models (vibeboard.models.vram) are advertised too.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, List, Optional


class ResidentModels:
    def __init__(self, capacity: int = 0):
        self.capacity = capacity  # 0: no limit (the VRAM manager evicts by bytes on its own)
        self._held: "OrderedDict[str, object]" = OrderedDict()
        self._lock = threading.RLock()
        self.loads: List[str] = []       # every load this process did, in order
        self.on_change: Optional[Callable[[], None]] = None

    def ensure(self, name: str, load: Callable[[], object]):
        with self._lock:
            if name in self._held:
                self._held.move_to_end(name)
                return self._held[name]
            while self.capacity and len(self._held) >= self.capacity:
                self._held.popitem(last=False)
            value = load()
            self._held[name] = value
            self.loads.append(name)
        if self.on_change is not None:
            self.on_change()
        return value

    def names(self) -> List[str]:
        with self._lock:
            held = list(self._held)
        try:
            from vibeboard.models import vram
            if vram._DEFAULT is not None:
                held += [m for m in vram._DEFAULT.models if m not in held]
        except Exception:  # advertising must never break a job
            pass
        return held


_MODELS = ResidentModels()


def models() -> ResidentModels:
    return _MODELS


def set_capacity(capacity: int) -> None:
    _MODELS.capacity = capacity
