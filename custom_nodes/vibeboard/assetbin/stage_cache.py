"""Per-stage cache for "Deconstruct scene": each stage's result is stored under a key that hashes the stage
name, its version, its settings and the keys of the stages it reads — so changing one setting re-runs that
stage and the ones after it, and nothing before it.

Layout: <root>/<stage>/<key[:20]>/manifest.json + tensors.safetensors. A manifest is file content: every
name in it is resolved with the pack's `safe_join` inside that stage folder, so a tampered cache cannot make
the loader read (or a later stage overwrite) anything outside it.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil

import torch

from ..media.files import UnsafeNameError, safe_join

MANIFEST = "manifest.json"
TENSORS = "tensors.safetensors"


def digest(value) -> str:
    """Stable sha256 of JSON-able settings, tensors and nested lists/dicts of them."""
    h = hashlib.sha256()

    def feed(v):
        if isinstance(v, torch.Tensor):
            t = v.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(v, dict):
            h.update(b"{")
            for k in sorted(v):
                h.update(str(k).encode() + b":")
                feed(v[k])
            h.update(b"}")
        elif isinstance(v, (list, tuple)):
            h.update(b"[")
            for x in v:
                feed(x)
            h.update(b"]")
        else:
            h.update(json.dumps(v, sort_keys=True, default=str).encode())

    feed(value)
    return h.hexdigest()


class StageCache:
    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        os.makedirs(self.root, exist_ok=True)
        self.log: list = []  # (stage, "ran" | "cached") in call order

    def key(self, stage: str, version: int, settings: dict, upstream: list) -> str:
        return digest({"stage": stage, "version": version, "settings": settings, "upstream": list(upstream)})

    def _folder(self, stage: str, key: str) -> str:
        return safe_join(self.root, f"{stage}/{key[:20]}")

    def load(self, stage: str, key: str):
        """(tensors, meta) of a stored stage result, or None when absent/incomplete/not ours."""
        from safetensors.torch import load_file

        folder = self._folder(stage, key)
        try:
            with open(safe_join(folder, MANIFEST)) as handle:
                manifest = json.load(handle)
        except (OSError, ValueError):
            return None
        if not isinstance(manifest, dict) or manifest.get("key") != key or manifest.get("stage") != stage:
            return None
        try:
            tensors_name = str(manifest.get("tensors", TENSORS))
            tensors = load_file(safe_join(folder, tensors_name))
            files = {str(k): safe_join(folder, str(v)) for k, v in (manifest.get("files") or {}).items()}
        except UnsafeNameError as exc:
            raise ValueError(f"stage cache {folder}: manifest names a file outside its folder ({exc})") from None
        except OSError:
            return None
        if any(not os.path.isfile(p) for p in files.values()):
            return None
        return tensors, {"meta": manifest.get("meta", {}), "files": files, "folder": folder}

    def save(self, stage: str, key: str, tensors: dict, meta: dict, files: dict | None = None) -> dict:
        """Store a result atomically (written to a temp folder, then renamed). `files`: name → source path of
        extra files (e.g. the GLB) copied in."""
        from safetensors.torch import save_file

        folder = self._folder(stage, key)
        tmp = folder + f".tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, os.path.join(tmp, TENSORS))
        stored = {}
        for name, src in (files or {}).items():
            base = os.path.basename(src)
            shutil.copyfile(src, safe_join(tmp, base))
            stored[name] = base
        with open(os.path.join(tmp, MANIFEST), "w") as handle:
            json.dump({"stage": stage, "key": key, "tensors": TENSORS, "files": stored, "meta": meta}, handle,
                      indent=1, default=str)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
        return {"meta": meta, "files": {k: os.path.join(folder, v) for k, v in stored.items()}, "folder": folder}

    def run(self, stage: str, version: int, settings: dict, upstream: list, compute, force: bool = False):
        """Load the stage result for these inputs or compute and store it. `compute()` returns
        (tensors, meta) or (tensors, meta, files). Returns (key, tensors, info)."""
        key = self.key(stage, version, settings, upstream)
        if not force:
            hit = self.load(stage, key)
            if hit is not None:
                self.log.append((stage, "cached"))
                return key, hit[0], hit[1]
        out = compute()
        tensors, meta = out[0], out[1]
        files = out[2] if len(out) > 2 else None
        info = self.save(stage, key, tensors, meta, files)
        self.log.append((stage, "ran"))
        return key, tensors, info

    def ran(self) -> list:
        return [s for s, how in self.log if how == "ran"]
