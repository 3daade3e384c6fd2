"""Block swap and sequential offload: run a model larger than the VRAM budget.

Block swap keeps the first `resident` transformer blocks on the GPU and streams the others from pinned host
memory through a small ring of GPU slots. While block j computes, block j+1 is copied on a side CUDA stream;
events order "slot free" → "copy" → "compute". Everything else (embeddings, head) stays resident.
Sequential offload moves each leaf module in just before it runs (text encoder / VAE: run once per prompt).
"""
from __future__ import annotations

import torch

from .flatstore import FlatStore


class BlockSwap:
    def __init__(self, model: torch.nn.Module, device, resident: int = 0, slots: int = 2,
                 blocks_attr: str = "blocks", pin: bool = True):
        self.model, self.device = model, torch.device(device)
        self.blocks = list(getattr(model, blocks_attr))
        self.resident = max(0, min(int(resident), len(self.blocks)))
        self.swapped = list(range(self.resident, len(self.blocks)))
        self.cuda = self.device.type == "cuda"
        self.stream = torch.cuda.Stream(self.device) if self.cuda else None
        self.hooks = []
        # Everything but the swapped blocks lives on the device for the whole run.
        swapped_ids = {id(self.blocks[i]) for i in self.swapped}
        self.rest = [m for m in model.children() if m is not getattr(model, blocks_attr)]
        for i in range(self.resident):
            self.rest.append(self.blocks[i])
        for name, p in model.named_parameters(recurse=False):
            p.data = p.data.to(self.device)
        for m in self.rest:
            m.to(self.device)
        self.stores = {i: FlatStore(self.blocks[i], pin=pin) for i in self.swapped}
        assert all(id(self.blocks[i]) in swapped_ids for i in self.stores)
        n_slots = min(max(1, slots), len(self.swapped)) if self.swapped else 0
        sizes: dict = {}
        for store in self.stores.values():
            for d, n in store.sizes.items():
                sizes[d] = max(sizes.get(d, 0), n)
        self.slot_bufs = [{d: torch.empty(n, dtype=d, device=self.device) for d, n in sizes.items()}
                          for _ in range(n_slots)]
        self.slot_of = {j: k % n_slots for k, j in enumerate(self.swapped)} if n_slots else {}
        self.ready = {}   # block index → event (copy finished)
        self.freed = [None] * n_slots  # slot → event (last user finished computing)
        self.occupant = [None] * n_slots
        self.transfers = 0
        for j in self.swapped:
            self.hooks.append(self.blocks[j].register_forward_pre_hook(self._make_pre(j)))
            self.hooks.append(self.blocks[j].register_forward_hook(self._make_post(j)))

    # ---- accounting ----
    def device_bytes(self) -> int:
        slot = sum(t.numel() * t.element_size() for b in self.slot_bufs for t in b.values())
        rest = sum(p.numel() * p.element_size() for m in self.rest for p in m.parameters())
        rest += sum(p.numel() * p.element_size() for p in self.model.parameters(recurse=False))
        return slot + rest

    # ---- streaming ----
    def _prefetch(self, j: int) -> None:
        if j in self.ready:
            return
        s = self.slot_of[j]
        prev = self.occupant[s]
        if prev is not None and prev != j:
            self.stores[prev].to_host(copy_back=False)
            self.ready.pop(prev, None)
        if self.cuda:
            if self.freed[s] is not None:
                self.stream.wait_event(self.freed[s])
            self.stores[j].to_device(self.device, stream=self.stream, into=self.slot_bufs[s])
            event = torch.cuda.Event()
            event.record(self.stream)
        else:
            self.stores[j].to_device(self.device, into=self.slot_bufs[s])
            event = None
        self.occupant[s] = j
        self.ready[j] = event
        self.transfers += 1

    def _make_pre(self, j: int):
        def hook(module, args):
            self._prefetch(j)
            event = self.ready[j]
            if event is not None:
                torch.cuda.current_stream(self.device).wait_event(event)
            nxt = self._next(j)
            if nxt is not None and self.slot_of[nxt] != self.slot_of[j]:
                self._prefetch(nxt)
        return hook

    def _make_post(self, j: int):
        def hook(module, args, output):
            s = self.slot_of[j]
            if self.cuda:
                event = torch.cuda.Event()
                event.record(torch.cuda.current_stream(self.device))
                self.freed[s] = event
            # Next block after the last swapped one is the first swapped one of the next forward.
            nxt = self._next(j)
            if nxt is None and self.swapped and self.slot_of[self.swapped[0]] != s:
                self._prefetch(self.swapped[0])
            return output
        return hook

    def _next(self, j: int):
        k = self.swapped.index(j)
        return self.swapped[k + 1] if k + 1 < len(self.swapped) else None

    def detach(self, to_host: bool = True) -> None:
        for h in self.hooks:
            h.remove()
        self.hooks = []
        for j, store in self.stores.items():
            store.to_host(copy_back=False)
        if to_host:
            for m in self.rest:
                m.to("cpu")
            for p in self.model.parameters(recurse=False):
                p.data = p.data.to("cpu")
        self.slot_bufs = []


class SequentialOffload:
    """Each leaf module with weights is copied in right before its forward and dropped after it."""

    def __init__(self, model: torch.nn.Module, device, pin: bool = True):
        self.device = torch.device(device)
        self.stores, self.hooks = [], []
        for module in model.modules():
            if any(True for _ in module.parameters(recurse=False)) or any(
                    True for _ in module.buffers(recurse=False)):
                store = FlatStore(module, pin=pin, recurse=False)
                self.stores.append(store)
                self.hooks.append(module.register_forward_pre_hook(
                    lambda m, a, s=store: (s.to_device(self.device), None)[1]))
                self.hooks.append(module.register_forward_hook(
                    lambda m, a, o, s=store: (s.to_host(copy_back=False), o)[1]))
        self.peak_bytes = max((s.nbytes for s in self.stores), default=0)

    def device_bytes(self) -> int:
        return sum(s.nbytes for s in self.stores if s.on_device)

    def detach(self) -> None:
        for h in self.hooks:
            h.remove()
        self.hooks = []
