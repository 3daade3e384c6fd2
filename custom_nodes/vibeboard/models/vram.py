"""VRAM manager: one process loads what each task needs, on demand, inside a byte budget.

Tiers: device (GPU) → pinned host RAM (fast reload: one bus copy) → disk spill file. Eviction is
least-recently-used. A model larger than the whole budget runs with block swap (transformers with `.blocks`)
or sequential offload (text encoder / VAE). Works on CPU with a simulated budget (tests): the accounting is the
same, the "device" is just the CPU.
"""
from __future__ import annotations

import os
import tempfile
import threading
import time
from contextlib import contextmanager

import torch

from ..common import grad
from .blockswap import BlockSwap, SequentialOffload
from .flatstore import FlatStore

GB = 1024 ** 3


def default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def default_budget(device: torch.device) -> int:
    env = os.environ.get("VIBEBOARD_VRAM_BUDGET_GB")
    if env:
        return int(float(env) * GB)
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        return int(total - max(3 * GB, 0.2 * total))  # room for activations
    return 64 * GB


class ManagedModel:
    def __init__(self, name, module, mode="auto", resident_blocks=None):
        self.name, self.module, self.mode = name, module, mode
        self.state = "host"        # "device" | "host" | "disk"
        self.store = None          # FlatStore once it has been on the device
        self.runner = None         # BlockSwap / SequentialOffload when partially resident
        self.swap = None           # BlockSwap / SequentialOffload kept across evictions (pinned copies reused)
        self.last_used = 0.0
        self.in_use = 0
        self.resident_blocks = resident_blocks
        self.nbytes = sum(t.numel() * t.element_size() for t in _tensors(module))
        self.spill_path = None

    def device_bytes(self) -> int:
        if self.state != "device":
            return 0
        return self.runner.device_bytes() if self.runner is not None else self.nbytes


def _tensors(module):
    seen = set()
    for t in list(module.parameters()) + list(module.buffers()):
        if id(t) not in seen:
            seen.add(id(t))
            yield t


class VramManager:
    def __init__(self, budget_bytes: int = None, device=None, host_budget_bytes: int = None,
                 disk_dir: str = None, pin: bool = True):
        self.device = torch.device(device) if device is not None else default_device()
        self.budget = int(budget_bytes) if budget_bytes is not None else default_budget(self.device)
        self.host_budget = host_budget_bytes
        self.disk_dir = disk_dir
        self.pin = pin
        self.models: dict = {}
        self.lock = threading.RLock()
        self.events: list = []      # (action, name) — what happened, for tests and logs
        self.peak_device_bytes = 0

    # ---- registration ----
    def register(self, name: str, module: torch.nn.Module, mode: str = "auto", resident_blocks=None):
        """mode: auto (resident if it fits, else block swap / sequential), resident, blockswap, sequential.
        A registered model is an inference model: its parameters stop requiring grad (common.grad.freeze), so no
        caller builds an autograd graph through it by accident; a trainer keeps its own unregistered copy. It
        outlives the node that loaded it, so weights loaded under inference mode become normal tensors (copied
        once; load under `grad.outside_inference()` to skip the copy), which any later caller may move or edit."""
        with self.lock:
            if name in self.models:
                return self.models[name]
            grad.normal_module(grad.freeze(module))
            entry = ManagedModel(name, module, mode, resident_blocks)
            first = next(_tensors(module), None)
            if self.device.type != "cpu" and first is not None and first.device.type == self.device.type:
                # Loaded straight onto the device (no host copy yet): the first eviction makes the pinned one.
                entry.state = "device"
                self._note("resident", name)
            self.models[name] = entry
            return entry

    def unregister(self, name: str) -> None:
        with self.lock:
            entry = self.models.pop(name, None)
            if entry is not None:
                self._to_host(entry)
                if entry.spill_path and os.path.exists(entry.spill_path):
                    os.remove(entry.spill_path)

    # ---- accounting ----
    def device_bytes(self) -> int:
        return sum(m.device_bytes() for m in self.models.values())

    def host_bytes(self) -> int:
        return sum(m.nbytes for m in self.models.values() if m.state == "host")

    def _note(self, action: str, name: str) -> None:
        self.events.append((action, name))
        self.peak_device_bytes = max(self.peak_device_bytes, self.device_bytes())

    # ---- load / evict ----
    def load(self, name: str) -> torch.nn.Module:
        with self.lock:
            entry = self.models[name]
            entry.last_used = time.monotonic()
            if entry.state == "device":
                self.events.append(("hit", name))
                return entry.module
            if entry.state == "disk":
                entry.store.unspill(entry.spill_path, pin=self.pin)
                entry.state = "host"
                self._note("from_disk", name)
            mode = entry.mode
            if mode == "auto":
                if entry.nbytes <= self.budget:
                    mode = "resident"
                else:
                    mode = "blockswap" if hasattr(entry.module, "blocks") else "sequential"
            if mode == "resident":
                self._make_room(entry.nbytes, keep=name)
                if entry.store is None:
                    entry.store = FlatStore(entry.module, pin=self.pin)
                entry.store.to_device(self.device)
                self._note("load", name)
            elif mode == "blockswap":
                self._load_blockswap(entry)
            else:
                self._make_room(self._largest_leaf(entry.module), keep=name)
                if not isinstance(entry.swap, SequentialOffload):
                    entry.swap = SequentialOffload(entry.module, self.device, pin=self.pin)
                entry.swap.attach()
                entry.runner = entry.swap
                self._note("load_sequential", name)
            entry.state = "device"
            self._note("resident", name)
            if self.device.type == "cuda":
                torch.cuda.current_stream(self.device).synchronize()
            return entry.module

    def _load_blockswap(self, entry: ManagedModel) -> None:
        blocks = list(entry.module.blocks)
        per_block = max(sum(t.numel() * t.element_size() for t in _tensors(b)) for b in blocks)
        rest = entry.nbytes - sum(sum(t.numel() * t.element_size() for t in _tensors(b)) for b in blocks)
        self._make_room(min(self.budget, entry.nbytes), keep=entry.name)
        free = self.budget - self.device_bytes() - rest - 2 * per_block
        resident = entry.resident_blocks
        if resident is None:
            resident = max(0, min(len(blocks), free // max(per_block, 1)))
        resident = min(int(resident), len(blocks), max(0, free // max(per_block, 1)))  # never over budget
        if rest + 2 * per_block > self.budget - self.device_bytes():
            raise MemoryError(f"{entry.name}: even with block swap it needs "
                              f"{(rest + 2 * per_block) / GB:.2f} GB, budget left "
                              f"{(self.budget - self.device_bytes()) / GB:.2f} GB")
        if isinstance(entry.swap, BlockSwap) and entry.swap.resident == int(resident):
            entry.swap.attach()
        else:
            entry.swap = BlockSwap(entry.module, self.device, resident=int(resident), pin=self.pin)
        entry.runner = entry.swap
        self._note(f"load_blockswap:{int(resident)}", entry.name)

    @staticmethod
    def _largest_leaf(module) -> int:
        return max((sum(t.numel() * t.element_size() for t in list(m.parameters(recurse=False)) +
                        list(m.buffers(recurse=False))) for m in module.modules()), default=0)

    def _make_room(self, need: int, keep: str = None) -> None:
        """Evict least-recently-used models (not in use) to host RAM until `need` bytes fit."""
        while self.device_bytes() + need > self.budget:
            candidates = [m for m in self.models.values()
                          if m.state == "device" and m.in_use == 0 and m.name != keep]
            if not candidates:
                if need > self.budget:
                    raise MemoryError(f"{keep}: {need / GB:.2f} GB does not fit the {self.budget / GB:.2f} GB "
                                      "VRAM budget")
                raise MemoryError(f"{keep}: needs {need / GB:.2f} GB but models in use hold "
                                  f"{self.device_bytes() / GB:.2f} of {self.budget / GB:.2f} GB")
            victim = min(candidates, key=lambda m: m.last_used)
            self._to_host(victim)
        self._limit_host(keep)
        self._ask_host_for(need)

    def _ask_host_for(self, need: int) -> None:
        """Our budget is bookkeeping; the GPU may also hold others' tensors (ComfyUI's own models)."""
        if self.device.type != "cuda" or need <= 0:
            return
        free, _ = torch.cuda.mem_get_info(self.device)
        if free >= need + GB // 2:
            return
        torch.cuda.empty_cache()
        try:  # inside ComfyUI: let its model manager unload what it holds
            import comfy.model_management as mm
            mm.free_memory(need + GB // 2, self.device)
        except Exception:
            pass

    def _to_host(self, entry: ManagedModel) -> None:
        if entry.state != "device":
            return
        if entry.runner is not None:
            entry.runner.detach()
            entry.runner = None
        elif entry.store is None:  # registered on the device: gather it into pinned host buffers now
            entry.store = FlatStore(entry.module, pin=self.pin)
        else:
            entry.store.to_host(copy_back=True)
        entry.state = "host"
        self._note("offload", entry.name)
        # No empty_cache here: the freed block stays in PyTorch's cache for the next model (or the same one
        # coming back), so a swap costs the bus copy, not a cudaMalloc. free() returns memory to the driver.

    def _limit_host(self, keep: str = None) -> None:
        """Spill LRU host copies to disk when a host RAM budget is set."""
        if self.host_budget is None:
            return
        while self.host_bytes() > self.host_budget:
            candidates = [m for m in self.models.values() if m.state == "host" and m.in_use == 0 and m.name != keep]
            if not candidates:
                return
            victim = min(candidates, key=lambda m: m.last_used)
            if victim.store is None:
                victim.store = FlatStore(victim.module, pin=self.pin)
            folder = self.disk_dir or tempfile.gettempdir()
            os.makedirs(folder, exist_ok=True)
            victim.spill_path = os.path.join(folder, f"vb_spill_{os.getpid()}_{abs(hash(victim.name))}.safetensors")
            victim.store.spill(victim.spill_path)
            victim.state = "disk"
            self._note("to_disk", victim.name)

    def offload(self, name: str, to: str = "host") -> None:
        with self.lock:
            entry = self.models[name]
            self._to_host(entry)
            if to == "disk" and entry.store is not None and entry.state == "host":
                saved, self.host_budget = self.host_budget, 0
                try:
                    self._limit_host()
                finally:
                    self.host_budget = saved

    @contextmanager
    def use(self, name: str):
        """Load `name` and protect it from eviction while the block runs."""
        module = self.load(name)
        entry = self.models[name]
        entry.in_use += 1
        try:
            yield module
        finally:
            entry.in_use -= 1
            entry.last_used = time.monotonic()

    def free(self, nbytes: int = None, unload: bool = False) -> int:
        """Free device memory (all of it when nbytes is None). `unload` also forgets the models."""
        with self.lock:
            before = self.device_bytes()
            if nbytes is None:
                for entry in list(self.models.values()):
                    if entry.in_use == 0:
                        self._to_host(entry)
            else:
                self._make_room(max(0, nbytes - (self.budget - self.device_bytes())))
            if unload:
                for name in [n for n, m in self.models.items() if m.in_use == 0]:
                    self.unregister(name)
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            return before - self.device_bytes()

    def stats(self) -> dict:
        """What is loaded where (for /system_stats, /free and `vibeboard models`)."""
        with self.lock:
            out = {"device": str(self.device), "budget_bytes": self.budget,
                   "device_bytes": self.device_bytes(), "host_bytes": self.host_bytes(),
                   "peak_device_bytes": self.peak_device_bytes, "models": []}
            for m in sorted(self.models.values(), key=lambda m: -m.last_used):
                out["models"].append({"name": m.name, "state": m.state, "bytes": m.nbytes,
                                      "device_bytes": m.device_bytes(),
                                      "mode": type(m.runner).__name__ if m.runner else "resident",
                                      "in_use": m.in_use})
            if self.device.type == "cuda":
                out["torch_allocated_bytes"] = torch.cuda.memory_allocated(self.device)
                out["torch_reserved_bytes"] = torch.cuda.memory_reserved(self.device)
            return out


_DEFAULT = None


def manager() -> VramManager:
    """The process-wide manager (the server's /free and /system_stats read this one)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = VramManager()
        from . import release
        release.hook_comfy()  # inside ComfyUI: its unload also frees this manager
    return _DEFAULT


def set_manager(m: VramManager) -> None:
    global _DEFAULT
    _DEFAULT = m


def handle_free_request(body: dict) -> dict:
    """ComfyUI's POST /free body: {"unload_models": bool, "free_memory": bool}. Returns what was done."""
    if _DEFAULT is None:
        return {"freed_bytes": 0, "unloaded": []}
    m = _DEFAULT
    names = list(m.models)
    freed = 0
    if body.get("free_memory") or body.get("unload_models"):
        freed = m.free(unload=bool(body.get("unload_models")))
    if m.device.type == "cuda":
        torch.cuda.empty_cache()
    return {"freed_bytes": freed, "unloaded": [n for n in names if n not in m.models]}


def system_stats() -> dict:
    """Extra block for GET /system_stats: the manager's budget and what is loaded where."""
    return manager().stats() if _DEFAULT is not None else {"models": [], "budget_bytes": None}
