"""The model registry (registry.json, data) and where model files live on this machine.

Roots searched, in order: our models dir (`VIBEBOARD_MODELS_DIR`, runtime.models_directory()), then ComfyUI's
`models/` — from folder_paths when running inside ComfyUI (extra_model_paths.yaml included), or the folder given
with `--comfyui PATH` / `VIBEBOARD_COMFYUI_DIR`. A file present in either is used where it is: artists never
download twice.
"""
from __future__ import annotations

import fnmatch
import json
import os
from typing import Optional

from ..common import runtime

REGISTRY_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "registry.json")
FOLDERS = ("diffusion_models", "text_encoders", "vae", "loras", "clip_vision", "checkpoints", "diffusers")
# ComfyUI's legacy names for the same folders.
ALIASES = {"diffusion_models": ("unet",), "text_encoders": ("clip",)}

_registry = None


def load_registry() -> dict:
    global _registry
    if _registry is None:
        with open(REGISTRY_PATH) as f:
            _registry = json.load(f)
    return _registry


def entry(name: str) -> dict:
    models = load_registry()["models"]
    if name not in models:
        close = [n for n in models if name.lower() in n]
        raise KeyError(f"unknown model {name!r}" + (f"; did you mean {', '.join(close)}?" if close else
                                                     "; `vibeboard models list` shows the names"))
    return models[name]


def comfyui_models_dir(comfyui: Optional[str] = None) -> Optional[str]:
    path = comfyui or os.environ.get("VIBEBOARD_COMFYUI_DIR")
    if path:
        path = os.path.abspath(os.path.expanduser(path))
        return os.path.join(path, "models") if os.path.isdir(os.path.join(path, "models")) else path
    try:
        import folder_paths  # inside ComfyUI
        return folder_paths.models_dir
    except Exception:
        return None


def folder_dirs(folder: str, comfyui: Optional[str] = None) -> list:
    """Every directory that may hold files of this kind, ours first."""
    dirs = [os.path.join(runtime.models_directory(), folder)]
    try:
        import folder_paths
        if comfyui is None and not os.environ.get("VIBEBOARD_COMFYUI_DIR"):
            dirs += list(folder_paths.get_folder_paths(folder))
    except Exception:
        pass
    root = comfyui_models_dir(comfyui)
    if root:
        for name in (folder,) + ALIASES.get(folder, ()):
            dirs.append(os.path.join(root, name))
    out = []
    for d in dirs:
        d = os.path.abspath(d)
        if d not in out:
            out.append(d)
    return out


def find_file(name: str, folder: str, comfyui: Optional[str] = None) -> Optional[str]:
    """A file (or diffusers folder) by its name relative to one of the folder's directories."""
    if os.path.isabs(name) and os.path.exists(name):
        if runtime.paths_restricted():  # a server only loads models from its own folders
            runtime.user_path("model loader", "name", name, "/")
        return name
    from ..common.paths import PathEscapeError
    for d in folder_dirs(folder, comfyui):
        try:  # a name from a workflow: relative, no '..', and within the server's folders when restricted
            path = runtime.content_path(d, name, "model name")
        except PathEscapeError:
            return None
        if os.path.exists(path):
            return path
    return None


def list_folder(folder: str, patterns=("*.safetensors", "*.sft"), dirs_too: bool = False,
                comfyui: Optional[str] = None) -> list:
    """Names for a node dropdown: files (recursive, relative) and optionally diffusers folders."""
    names = []
    for d in folder_dirs(folder, comfyui):
        if not os.path.isdir(d):
            continue
        for base, subdirs, files in os.walk(d):
            subdirs[:] = [s for s in subdirs if not s.startswith(".")]
            rel = os.path.relpath(base, d)
            for f in files:
                if any(fnmatch.fnmatch(f, p) for p in patterns):
                    names.append(f if rel == "." else os.path.join(rel, f))
            if dirs_too and os.path.isfile(os.path.join(base, "model_index.json")):
                names.append(rel)
    return sorted(set(names))


def known_files(folder: str) -> list:
    """Single-file names the registry places in `folder` (offered in dropdowns even before they are pulled,
    so a saved workflow validates and the loader can say how to get a missing file)."""
    names = set()
    for e in load_registry()["models"].values():
        for src in e["sources"].values():
            if src.get("folder") == folder and not src.get("subdir") and src.get("format", "safetensors") != "ckpt":
                names.update(os.path.basename(f["path"]) for f in src.get("files", []))
    return sorted(names)


def choices(folder: str, **kw) -> list:
    """Present files first, then registry names not present yet."""
    present = list_folder(folder, **kw)
    return present + [n for n in known_files(folder) if n not in present]


def expected_path(folder: str, name: str) -> str:
    return os.path.join(runtime.models_directory(), folder, name)


# ---- registry entries → local paths ----------------------------------------------------------------
def source_of(name: str, source: Optional[str] = None) -> tuple:
    e = entry(name)
    sources = e["sources"]
    if source is None:
        source = next(iter(sources))
    if source not in sources:
        raise KeyError(f"{name} has no source {source!r}; choose one of {', '.join(sources)}")
    return source, sources[source]


def local_targets(name: str, source: Optional[str] = None, root: Optional[str] = None) -> list:
    """[(repo path or None for a whole repo, local path relative to a models root)] for one source."""
    source, src = source_of(name, source)
    if src.get("diffusers"):
        return [(None, os.path.join("diffusers", src["repo"].split("/")[-1]))]
    folder = src.get("folder", "checkpoints")
    sub = src.get("subdir", "")
    if "files" in src:
        return [(f["path"], os.path.join(folder, sub, os.path.basename(f["path"]))) for f in src["files"]]
    return [(None, os.path.join(folder, sub or src["repo"].split("/")[-1]))]


def locate(rel: str, comfyui: Optional[str] = None) -> Optional[str]:
    """Find a registry-relative path ('vae/wan_2.1_vae.safetensors') in any root."""
    folder, _, name = rel.partition(os.sep)
    return find_file(name, folder, comfyui)


def source_size_gb(src: dict) -> float:
    if "files" in src:
        return sum(f.get("size_gb", 0) for f in src["files"])
    return float(src.get("size_gb", 0))


def status(name: str, comfyui: Optional[str] = None) -> dict:
    """{source: {"present": bool, "paths": [...], "missing": [...], "size_gb": float}}."""
    out = {}
    for source, src in entry(name)["sources"].items():
        paths, missing = [], []
        for repo_path, rel in local_targets(name, source):
            found = locate(rel, comfyui)
            if found and (repo_path is not None or os.listdir(found)):
                paths.append(found)
            else:
                missing.append(rel)
        out[source] = {"present": not missing, "paths": paths, "missing": missing,
                       "size_gb": source_size_gb(src), "repo": src["repo"],
                       "format": src.get("format", "safetensors")}
    return out
