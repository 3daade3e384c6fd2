"""Block swap and sequential offload: run a model larger than the VRAM budget.

Block swap keeps the first `resident` transformer blocks on the GPU and streams the others from pinned host
memory through a small ring of GPU slots. While block j computes, block j+1 is copied on a side CUDA stream;
events order "slot free" → "copy" → "compute". Everything else (embeddings, head) stays resident.
Sequential offload moves each leaf module in just before it runs (text encoder / VAE: run once per prompt).
"""
from __future__ import annotations

import torch

from ..common import grad
from .flatstore import FlatStore, HostArena, flat_sizes


class BlockSwap:
    """attach() puts the non-swapped part on the device and hooks the swapped blocks; detach() undoes it.
    The pinned host copies are made once and kept across detach/attach (re-attaching is cheap)."""

    def __init__(self, model: torch.nn.Module, device, resident: int = 0, slots: int = 2,
                 blocks_attr: str = "blocks", pin: bool = True, attach: bool = True):
        self.model, self.device = model, torch.device(device)
        self.blocks = list(getattr(model, blocks_attr))
        self.resident = max(0, min(int(resident), len(self.blocks)))
        self.swapped = list(range(self.resident, len(self.blocks)))
        self.cuda = self.device.type == "cuda"
        self.stream = torch.cuda.Stream(self.device) if self.cuda else None
        self.n_slots = min(max(1, slots), len(self.swapped)) if self.swapped else 0
        total: dict = {}
        for i in self.swapped:
            for d, n in flat_sizes(self.blocks[i]).items():
                total[d] = total.get(d, 0) + n
        arena = HostArena(total, pin=pin)  # one pinned allocation per dtype for every streamed block
        self.stores = {i: FlatStore(self.blocks[i], pin=pin, arena=arena) for i in self.swapped}
        # Everything else (embeddings, head, resident blocks) moves as one flat buffer.
        self.rest = FlatStore(model, pin=pin, exclude=[self.blocks[i] for i in self.swapped])
        self.slot_sizes: dict = {}
        for store in self.stores.values():
            for d, n in store.sizes.items():
                self.slot_sizes[d] = max(self.slot_sizes.get(d, 0), n)
        self.slot_of = {j: k % self.n_slots for k, j in enumerate(self.swapped)} if self.n_slots else {}
        self.hooks, self.slot_bufs = [], []
        self.transfers = 0
        self.attached = False
        # Weight edits (LoRA merges) must land in the host copies, never in a slot about to be reused.
        model._vb_before_weight_edit = self.park
        if attach:
            self.attach()

    @grad.outside_inference()  # the slot buffers outlive this call (see flatstore)
    def attach(self) -> None:
        if self.attached:
            return
        self.rest.to_device(self.device)
        self.slot_bufs = [{d: torch.empty(n, dtype=d, device=self.device) for d, n in self.slot_sizes.items()}
                          for _ in range(self.n_slots)]
        self.ready = {}                       # block index → event (its copy finished)
        self.freed = [None] * self.n_slots    # slot → event (its last user finished computing)
        self.occupant = [None] * self.n_slots
        self.compiled = {}
        for j in self.swapped:
            # Streaming hooks must run eagerly: a compiled block would trace them; park its compiled call.
            if getattr(self.blocks[j], "_compiled_call_impl", None) is not None:
                self.compiled[j] = self.blocks[j]._compiled_call_impl
                self.blocks[j]._compiled_call_impl = None
            self.hooks.append(self.blocks[j].register_forward_pre_hook(self._make_pre(j)))
            self.hooks.append(self.blocks[j].register_forward_hook(self._make_post(j)))
        self.attached = True

    def park(self) -> None:
        """Send every block that sits in a slot back to its host copy (nothing prefetched)."""
        if not self.attached:
            return
        if self.cuda:
            torch.cuda.current_stream(self.device).synchronize()
            self.stream.synchronize()
        for s, j in enumerate(self.occupant):
            if j is not None:
                self.stores[j].to_host(copy_back=False)
                self.occupant[s] = None
        self.ready = {}

    def detach(self, to_host: bool = True) -> None:
        """Unhook; the resident part goes back to pinned RAM (to_host) or stays where it is."""
        if not self.attached:
            return
        self.park()
        for h in self.hooks:
            h.remove()
        for j, call in getattr(self, "compiled", {}).items():
            self.blocks[j]._compiled_call_impl = call
        self.compiled = {}
        self.hooks, self.slot_bufs = [], []
        if to_host:
            self.rest.to_host(copy_back=True)
        self.attached = False

    # ---- accounting ----
    def device_bytes(self) -> int:
        if not self.attached:
            return 0
        slot = sum(t.numel() * t.element_size() for b in self.slot_bufs for t in b.values())
        return slot + self.rest.nbytes

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
            # After the last swapped block, start on the first one of the next forward.
            if self._next(j) is None and self.swapped and self.slot_of[self.swapped[0]] != s:
                self._prefetch(self.swapped[0])
            return output
        return hook

    def _next(self, j: int):
        k = self.swapped.index(j)
        return self.swapped[k + 1] if k + 1 < len(self.swapped) else None


class SequentialOffload:
    """Each module holding weights is copied in right before its forward and dropped after it.
    Host copies are made once; detach()/attach() only remove/add the hooks."""

    def __init__(self, model: torch.nn.Module, device, pin: bool = True):
        self.device = torch.device(device)
        self.stores, self.hooks = [], []
        for module in model.modules():
            if any(True for _ in module.parameters(recurse=False)) or any(
                    True for _ in module.buffers(recurse=False)):
                self.stores.append((module, FlatStore(module, pin=pin, recurse=False)))
        self.peak_bytes = max((s.nbytes for _, s in self.stores), default=0)
        self.attach()

    def attach(self) -> None:
        if self.hooks:
            return
        for module, store in self.stores:
            self.hooks.append(module.register_forward_pre_hook(
                lambda m, a, s=store: (s.to_device(self.device), None)[1]))
            self.hooks.append(module.register_forward_hook(
                lambda m, a, o, s=store: (s.to_host(copy_back=False), o)[1]))

    def device_bytes(self) -> int:
        return sum(s.nbytes for _, s in self.stores if s.on_device)

    def detach(self) -> None:
        for h in self.hooks:
            h.remove()
        self.hooks = []
