"""torch.compile warm-up paid once per machine: compile artefacts persisted in the models folder's `state/`.

Two layers, both under `<models>/state/torch_compile/<machine>/` (override: VIBEBOARD_COMPILE_CACHE):
- torch's "mega-cache" (`torch.compiler.save_cache_artifacts()` / `load_cache_artifacts()`): the inductor FX-graph,
  AOTAutograd and Triton-kernel (autotune included) artefacts of one compiled forward, in one file per shape key,
  written after the first compiled forward of that key and loaded before the next process's first one. A load makes
  Dynamo's trace of a block hit those caches instead of running inductor + Triton again;
- inductor's own on-disk cache dir (`TORCHINDUCTOR_CACHE_DIR`, Triton kernels under it), moved from /tmp (lost with
  the pod) into the same folder, unless the user set it.
`<machine>` = torch version + CUDA version + GPU name + compute capability: artefacts of another torch or card are
never loaded. The shape key adds the model's class and config, the input shapes/dtypes and the compile mode.

The files are written by this machine's own compiles (torch deserialises them with pickle, as it does its /tmp
cache); put nothing from elsewhere in that folder. Blocks are compiled regionally by the sampler
(`wan/sampler.py::compile_blocks`: one `compile()` per block, one graph shared by all 30 blocks since they run
the same code), so a trace covers one block, not the whole DiT.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from typing import Optional

import torch

log = logging.getLogger("vibeboard.compile_cache")
_lock = threading.Lock()
_loaded: set = set()      # shape keys whose artefacts this process loaded or saved
ENV_DIR = "VIBEBOARD_COMPILE_CACHE"


def machine_key(device=None) -> str:
    device = torch.device(device) if device is not None else torch.device(
        "cuda" if torch.cuda.is_available() else "cpu")
    parts = [f"torch{torch.__version__}"]
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        parts += [f"cuda{torch.version.cuda}", props.name, f"sm{props.major}{props.minor}"]
    else:
        parts.append(device.type)
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", "-".join(parts))


def cache_root() -> str:
    explicit = os.environ.get(ENV_DIR)
    if explicit:
        return os.path.abspath(os.path.expanduser(explicit))
    from ..common import runtime
    return os.path.join(runtime.models_directory(), "state", "torch_compile")


def machine_dir(device=None) -> str:
    return os.path.join(cache_root(), machine_key(device))


def _torch_default_inductor_dir() -> Optional[str]:
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir
        return os.path.abspath(default_cache_dir())
    except Exception:  # noqa: BLE001 - another torch layout: treat any value as the user's
        return None


def use_persistent_inductor_dir(device=None) -> Optional[str]:
    """Point inductor's (and so Triton's) on-disk cache into the machine folder unless the user chose one.
    (Importing torch._dynamo already writes torch's /tmp default into TORCHINDUCTOR_CACHE_DIR: that value is not a
    choice and is replaced.)"""
    current = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if current and os.path.abspath(current) != _torch_default_inductor_dir():
        return None
    path = os.path.join(machine_dir(device), "inductor")
    os.makedirs(path, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = path
    try:  # inductor memoises a few paths derived from the old dir
        from torch._inductor.utils import clear_caches
        clear_caches()
    except Exception:  # noqa: BLE001 - older torch: nothing memoised yet at this point
        pass
    return path


def _describe(value):
    if isinstance(value, torch.Tensor):
        return [list(value.shape), str(value.dtype)]
    if isinstance(value, (list, tuple)):
        return [_describe(v) for v in value]
    if isinstance(value, (int, float, bool, str)) or value is None:
        return value
    return type(value).__name__


def shape_key(model: torch.nn.Module, args: tuple = (), kwargs: Optional[dict] = None, mode: Optional[str] = None) -> str:
    config = getattr(model, "config", None)
    config = dict(config) if config is not None else {}
    spec = {"model": type(model).__name__, "config": {k: _describe(v) for k, v in sorted(config.items())
                                                       if not k.startswith("_")},
            "args": _describe(list(args)), "kwargs": {k: _describe(v) for k, v in sorted((kwargs or {}).items())},
            "mode": mode}
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:24]


def artefact_path(key: str, device=None) -> str:
    return os.path.join(machine_dir(device), f"mega-{key}.bin")


def load(key: str, device=None) -> bool:
    """Load this key's artefacts into torch's caches (once per process). True when a file was loaded."""
    path = artefact_path(key, device)
    with _lock:
        if key in _loaded:
            return False
        _loaded.add(key)
        if not os.path.isfile(path):
            return False
        try:
            with open(path, "rb") as f:
                info = torch.compiler.load_cache_artifacts(f.read())
        except Exception as exc:  # noqa: BLE001 - a damaged file: compile afresh, the next save replaces it
            info, error = None, exc
        else:
            error = "unreadable"
        if info is None:
            log.warning("compile cache %s not loaded (%s); compiling afresh", path, error)
            _loaded.discard(key)
            return False
    log.info("compile cache loaded: %s (%s)", path, info)
    return True


def save(key: str, device=None) -> Optional[str]:
    """Write what this process compiled so far as this key's artefacts (atomically). None when torch has none."""
    artefacts = torch.compiler.save_cache_artifacts()
    if not artefacts or not artefacts[0]:
        return None
    path = artefact_path(key, device)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(artefacts[0])
    os.replace(tmp, path)
    with _lock:
        _loaded.add(key)
    log.info("compile cache saved: %s", path)
    return path


def attach(model: torch.nn.Module, mode: Optional[str] = None) -> None:
    """Hooks on `model` (whose blocks are compiled): before its first forward with new shapes, load that key's
    artefacts; after it, save them if this machine has none yet. Idempotent."""
    if getattr(model, "_vb_compile_cache", False):
        return
    device = next((p.device for p in model.parameters()), None)
    use_persistent_inductor_dir(device)
    pending: dict = {}

    def before(module, args, kwargs):
        key = shape_key(module, args, kwargs, mode)
        if key not in _loaded:
            found = load(key, device)
            if not found:
                pending[key] = True
        module._vb_compile_key = key

    def after(module, args, kwargs, output):
        key = getattr(module, "_vb_compile_key", None)
        if key is not None and pending.pop(key, False):
            try:
                save(key, device)
            except OSError as exc:  # a read-only models folder: compiling still works, only not persisted
                log.warning("compile cache not saved (%s)", exc)

    model.register_forward_pre_hook(before, with_kwargs=True)
    model.register_forward_hook(after, with_kwargs=True)
    model._vb_compile_cache = True
