"""Autograd mode around node code: every node runs under `torch.inference_mode()`, as in ComfyUI; the few that
train or optimise opt out here.

Why: ComfyUI's PromptExecutor runs a whole prompt inside `torch.inference_mode()`, so a node pack that assumes
autograd is on breaks there, and one that leaves it on wastes memory (a VAE whose parameters required grad kept
every decoded chunk's graph and ran an H200 out of memory). Our embedded executor does the same as ComfyUI
(`node_mode()`), so what passes here passes there.

Under inference mode every tensor a node makes is an *inference tensor*: autograd refuses to record it ("Inference
tensors cannot be saved for backward"), and it cannot be updated in place outside inference mode. A node that
needs gradients (a LoRA trainer, a pose/contact optimisation, a layout fit) therefore:
  1. runs its optimisation inside `with training_mode():` (inference mode off, grad on — what ComfyUI's own
     TrainLoraNode does);
  2. turns tensors it got from other nodes, or made before opting out, into normal tensors with
     `normal_tensor(t)` / `normal_module(m)` before autograd sees them (a clone only where needed);
  3. creates its trainable parameters inside `training_mode()` (parameters made under inference mode are
     inference tensors and can never train).
State that outlives a node (model weights a cache keeps, the VRAM manager's buffers) is made under
`outside_inference()`, so whoever touches it next, in whatever mode, may update it in place.
Torch is imported only when needed (the runner imports this module before it knows whether any node uses torch;
`node_mode()` imports it at the first prompt, once — the pack's registry has normally imported it already).
"""
from __future__ import annotations

import contextlib
import importlib.util
import sys

_torch_installed = None  # cached importlib lookup: None = not checked yet


def _torch(load: bool):
    """The torch module: already imported, or imported now when `load` and it is installed; else None."""
    global _torch_installed
    torch = sys.modules.get("torch")
    if torch is not None or not load:
        return torch
    if _torch_installed is None:
        _torch_installed = importlib.util.find_spec("torch") is not None
    if not _torch_installed:
        return None
    import torch
    return torch


def node_mode():
    """What the embedded executor runs a prompt's nodes under: `torch.inference_mode()` (ComfyUI's
    PromptExecutor does exactly this). Imports torch if it is installed but not yet imported, so a node that
    imports torch only inside its function still runs in inference mode; without torch it is a no-op."""
    torch = _torch(load=True)
    return torch.inference_mode() if torch is not None else contextlib.nullcontext()


@contextlib.contextmanager
def training_mode():
    """Opt out of the host's inference mode for code that needs gradients: inference mode off and grad on (a
    plain `enable_grad()` is not enough — inside inference mode it records nothing). Nests, and restores the
    caller's modes on exit. Usable as a decorator."""
    import torch
    with torch.inference_mode(False), torch.enable_grad():
        yield


@contextlib.contextmanager
def outside_inference():
    """Inference mode off, grad off: for tensors that outlive the node that makes them — shared model weights,
    the VRAM manager's host/device buffers, caches. Normal tensors can be read and updated in place from any mode
    later (the next node under inference mode, a /free request on a server thread, ComfyUI unloading models
    between prompts, a script); an inference tensor cannot be updated in place outside inference mode ("Inplace
    update to inference tensor outside InferenceMode"). Usable as a decorator."""
    import torch
    with torch.inference_mode(False), torch.no_grad():
        yield


def normal_tensor(value):
    """`value` as a tensor autograd may use: an inference tensor (made under inference mode, e.g. by another
    node) is cloned outside inference mode; a normal tensor, or anything that is not a tensor, comes back as is
    (no copy)."""
    torch = _torch(load=False)
    if torch is None or not isinstance(value, torch.Tensor) or not value.is_inference():
        return value
    with torch.inference_mode(False):
        return value.clone()


def normal_module(module):
    """Replace `module`'s inference-tensor parameters and buffers (it was built or loaded under inference mode)
    with normal copies, in place, keeping each parameter's requires_grad and tied weights tied (one copy per
    tensor); returns the module. Nothing is copied for a module built outside inference mode."""
    import torch
    copies: dict = {}  # id(original) → its copy: a weight shared by two modules (tied embeddings) stays shared
    with torch.inference_mode(False):
        for owner in module.modules():
            for table, make in ((owner._parameters, lambda p: torch.nn.Parameter(p.detach().clone(),
                                                                               requires_grad=p.requires_grad)),
                                (owner._buffers, lambda b: b.clone())):
                for name, tensor in list(table.items()):
                    if tensor is not None and tensor.is_inference():
                        if id(tensor) not in copies:
                            copies[id(tensor)] = (tensor, make(tensor))  # keep the original alive: ids stay unique
                        table[name] = copies[id(tensor)][1]
    return module


def freeze(module):
    """An inference model: no parameter requires grad, so no caller (a script, a bench, a thread outside the
    executor's inference mode) can build an autograd graph through it by accident. Returns the module."""
    module.requires_grad_(False)
    return module
