"""A module's tensors packed into one flat buffer per dtype, so moving a model is a few large copies.

Moving 1000 parameters one by one costs launch overhead and allocator churn; copying one contiguous
buffer GPU → pinned host → GPU runs at the bus's speed, which is what makes LRU swapping cheap.
Parameters are re-pointed (`param.data = view`) so module objects, hooks and references stay valid.
Every buffer here is made and filled `outside_inference()`: the store outlives the node that loaded the model, and
is moved later by whoever needs the memory (a node under inference mode, a /free request, ComfyUI's unload between
prompts) — an inference tensor could not be updated in place by the latter two.
"""
from __future__ import annotations

import torch

from ..common import grad


def pinning_available() -> bool:
    return torch.cuda.is_available()


def _walk(module, include_buffers=True, recurse=True, exclude=()):
    """(owner, attr, is_param, tensor) for every distinct tensor, skipping excluded sub-trees."""
    seen = set()
    skip = {id(m) for ex in exclude for m in ex.modules()}
    for owner in (module.modules() if recurse else [module]):
        if id(owner) in skip:
            continue
        tensors = [(n, t, True) for n, t in owner._parameters.items() if t is not None]
        if include_buffers:
            tensors += [(n, t, False) for n, t in owner._buffers.items() if t is not None]
        for attr, tensor, is_param in tensors:
            if id(tensor) in seen:  # tied weights stay tied: only the first owner is tracked
                continue
            seen.add(id(tensor))
            yield owner, attr, is_param, tensor


def flat_sizes(module, **kw) -> dict:
    sizes: dict = {}
    for _, _, _, t in _walk(module, **kw):
        sizes[t.dtype] = sizes.get(t.dtype, 0) + t.numel()
    return sizes


class HostArena:
    """One pinned buffer per dtype, handed out in slices: many stores, one allocation each.
    (PyTorch's pinned allocator rounds every request up to a power of two; one big request wastes less.)"""

    @grad.outside_inference()
    def __init__(self, sizes: dict, pin: bool = True):
        pin = pin and pinning_available()
        self.buffers = {d: torch.empty(n, dtype=d, pin_memory=pin) for d, n in sizes.items()}
        self.used = {d: 0 for d in sizes}

    def take(self, dtype, n: int) -> torch.Tensor:
        off = self.used[dtype]
        self.used[dtype] = off + n
        return self.buffers[dtype][off:off + n]


class FlatStore:
    """Host copy (pinned when CUDA exists) of a module's parameters and buffers, grouped by dtype."""

    @grad.outside_inference()
    def __init__(self, module: torch.nn.Module, pin: bool = True, include_buffers: bool = True,
                 recurse: bool = True, exclude=(), arena: "HostArena" = None):
        self.module = module
        self.entries = []  # (owner module, attr name, is_param, dtype, offset, shape)
        sizes: dict = {}
        sources = []
        for owner, attr, is_param, tensor in _walk(module, include_buffers, recurse, exclude):
            off = sizes.get(tensor.dtype, 0)
            self.entries.append((owner, attr, is_param, tensor.dtype, off, tuple(tensor.shape)))
            sources.append(tensor)
            sizes[tensor.dtype] = off + tensor.numel()
        self.sizes = sizes
        self.nbytes = sum(n * torch.empty(0, dtype=d).element_size() for d, n in sizes.items())
        pin = pin and pinning_available()
        if arena is not None:
            self.host = {d: arena.take(d, n) for d, n in sizes.items()}
        else:
            self.host = {d: torch.empty(n, dtype=d, pin_memory=pin) for d, n in sizes.items()}
        self.device_flat: dict = {}
        # First fill: gather the current tensors into the host buffers, re-pointing each one right away so its
        # old storage can be freed before the next is copied (peak RAM ≈ one model, not two).
        for entry, src in zip(self.entries, sources):
            owner, attr, is_param, dtype, off, shape = entry
            self.host[dtype][off:off + src.numel()].copy_(src.detach().reshape(-1))
            self._point_one(entry, self.host)
        del sources
        self.on_device = False

    @staticmethod
    def _point_one(entry, flats: dict) -> None:
        owner, attr, is_param, dtype, off, shape = entry
        n = 1
        for s in shape:
            n *= s
        view = flats[dtype][off:off + n].view(shape)
        if is_param:
            owner._parameters[attr].data = view
        else:
            owner._buffers[attr] = view

    def _point(self, flats: dict) -> None:
        for entry in self.entries:
            self._point_one(entry, flats)

    @grad.outside_inference()
    def to_device(self, device, stream=None, into: dict = None) -> dict:
        """Copy host → device (into preallocated `into` buffers when given) and point the module there."""
        flats = {}
        ctx = torch.cuda.stream(stream) if stream is not None else _null()
        with ctx:
            for dtype, host in self.host.items():
                dst = into[dtype][:host.numel()] if into is not None else torch.empty(
                    host.numel(), dtype=dtype, device=device)
                dst.copy_(host, non_blocking=True)
                flats[dtype] = dst
        self.device_flat = flats
        self._point(flats)
        self.on_device = True
        return flats

    @grad.outside_inference()
    def to_host(self, copy_back: bool = True) -> None:
        """Point the module back at the host buffers; `copy_back` keeps on-device edits (LoRA merges)."""
        if self.on_device and copy_back:
            for dtype, flat in self.device_flat.items():
                self.host[dtype].copy_(flat, non_blocking=True)
            if any(f.is_cuda for f in self.device_flat.values()):
                torch.cuda.current_stream().synchronize()
        self._point(self.host)
        self.device_flat = {}
        self.on_device = False

    @grad.outside_inference()
    def spill(self, path: str) -> None:
        """Write the host buffers to disk and drop them (the disk tier of the LRU)."""
        from safetensors.torch import save_file
        self.to_host()
        save_file({str(d).replace("torch.", ""): t for d, t in self.host.items()}, path)
        for owner, attr, is_param, dtype, off, shape in self.entries:
            gone = torch.empty(0, dtype=dtype)  # nothing may run on a spilled module; reload first
            if is_param:
                owner._parameters[attr].data = gone
            else:
                owner._buffers[attr] = gone
        self.host = {}

    @grad.outside_inference()
    def unspill(self, path: str, pin: bool = True) -> None:
        from safetensors.torch import load_file
        loaded = load_file(path)
        pin = pin and pinning_available()
        self.host = {}
        for d in self.sizes:
            t = loaded[str(d).replace("torch.", "")]
            self.host[d] = t.pin_memory() if pin else t
        self._point(self.host)

    @property
    def spilled(self) -> bool:
        return not self.host


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
