"""The model registry (registry.json, data) and where model files live on this machine.

Roots searched, in order: our models dir (`VIBEBOARD_MODELS_DIR`, runtime.models_directory()), then ComfyUI's
`models/` — from folder_paths when running inside ComfyUI (extra_model_paths.yaml included), or the folder given
with `--comfyui PATH` / `VIBEBOARD_COMFYUI_DIR` (then that ComfyUI's `extra_model_paths.yaml` is read too). A file
present in any of them is used where it is: artists never download twice.

Every node that loads weights resolves its input with `resolve()` (or `find_file()`), so the folder a registry
source names (`folder`/`subdir`, see local_targets) is the folder its node looks in — tests/test_models_placement.py
checks this for every entry.
"""
from __future__ import annotations

import fnmatch
import json
import os
from typing import Optional

from ..common import runtime

REGISTRY_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "registry.json")
FOLDERS = ("diffusion_models", "text_encoders", "vae", "loras", "clip_vision", "checkpoints", "diffusers", "depth")
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


def extra_model_paths(comfyui_dir: str) -> dict:
    """{folder: [dirs]} from a ComfyUI install's extra_model_paths.yaml (ComfyUI's own format: sections with an
    optional `base_path`, each key a folder name whose value is one path per line). Inside ComfyUI, folder_paths
    has already read it; this is for the runner pointed at a ComfyUI folder."""
    path = os.path.join(comfyui_dir, "extra_model_paths.yaml")
    if not os.path.isfile(path):
        return {}
    try:
        import yaml
        with open(path) as fh:
            config = yaml.safe_load(fh) or {}
    except Exception:
        return {}
    out: dict = {}
    for section in config.values():
        if not isinstance(section, dict):
            continue
        base = section.get("base_path")
        if base:
            base = os.path.expandvars(os.path.expanduser(str(base)))
            if not os.path.isabs(base):
                base = os.path.join(os.path.dirname(path), base)
        for key, value in section.items():
            if key in ("base_path", "is_default") or not isinstance(value, str):
                continue
            for line in value.splitlines():
                line = os.path.expandvars(os.path.expanduser(line.strip()))
                if line:
                    out.setdefault(key, []).append(os.path.join(base, line) if base else line)
    return out


def _comfyui_install_dir(comfyui: Optional[str]) -> Optional[str]:
    path = comfyui or os.environ.get("VIBEBOARD_COMFYUI_DIR")
    if not path:
        return None
    path = os.path.abspath(os.path.expanduser(path))
    return os.path.dirname(path) if os.path.basename(path) == "models" else path


def folder_dirs(folder: str, comfyui: Optional[str] = None) -> list:
    """Every directory that may hold files of this kind, ours first."""
    dirs = [os.path.join(runtime.models_directory(), folder)]
    names = (folder,) + ALIASES.get(folder, ())
    if comfyui is None and not os.environ.get("VIBEBOARD_COMFYUI_DIR"):
        try:
            import folder_paths
            for name in names:  # a folder ComfyUI does not know (e.g. depth) raises: skip it
                try:
                    dirs += list(folder_paths.get_folder_paths(name))
                except Exception:
                    pass
        except Exception:
            pass
    root = comfyui_models_dir(comfyui)
    if root:
        for name in names:
            dirs.append(os.path.join(root, name))
    install = _comfyui_install_dir(comfyui)
    if install:
        extra = extra_model_paths(install)
        for name in names:
            dirs += extra.get(name, [])
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


def _split_folder(value: str):
    first, _, rest = value.partition("/")
    return (first, rest) if rest and (first in FOLDERS or any(first in a for a in ALIASES.values())) else (None, value)


def resolve(value: str, folder: str, comfyui: Optional[str] = None) -> Optional[str]:
    """A model typed into a node, found in any root: a name inside `folder` ('Genfocus/deblurNet.safetensors'),
    the same with the folder in front ('loras/Genfocus/…', 'diffusers/FLUX.1-dev'), or an absolute path. None if
    absent. Names may have sub-folders but no '..' (they stay inside the model folders)."""
    value = (value or "").strip().replace("\\", "/")
    if not value:
        return None
    if os.path.isabs(value):
        return find_file(value, folder, comfyui)
    if any(part == ".." for part in value.split("/")):
        raise ValueError(f"'{value}' contains '..'; model names stay inside the model folders")
    named, rest = _split_folder(value)
    if named:
        canonical = next((f for f, aliases in ALIASES.items() if named in aliases), named)
        found = find_file(rest, canonical, comfyui)
        if found:
            return found
    found = find_file(value, folder, comfyui)
    if found:
        return found
    # older workflows typed paths relative to the models root ('genfocus/deblurNet.safetensors')
    for root in (runtime.models_directory(), comfyui_models_dir(comfyui)):
        if root and os.path.exists(os.path.join(root, value)):
            return os.path.join(root, value)
    return None


def expected_location(value: str, folder: str) -> str:
    """Where `resolve` would find `value` after `vibeboard models pull` (our models dir)."""
    value = (value or "").strip().replace("\\", "/")
    if os.path.isabs(value):
        return value
    named, rest = _split_folder(value)
    return os.path.join(runtime.models_directory(), named or folder, rest if named else value)


def pull_hint(value: str) -> str:
    """' — get it with `vibeboard models pull NAME [--source S]`' for a file/folder some registry source places."""
    command = pull_command(value)
    return f" — get it with `{command}`" if command else ""


def pull_command(value: str) -> Optional[str]:
    found = pull_source(value)
    if not found:
        return None
    name, source = found
    default = next(iter(entry(name)["sources"]))
    return f"vibeboard models pull {name}" + ("" if source == default else f" --source {source}")


def pull_source(value: str) -> Optional[tuple]:
    """(registry name, source) whose pull puts `value` (a node's file/folder name) in place, or None."""
    value = (value or "").strip().replace("\\", "/").rstrip("/")
    if not value:
        return None
    _, rest = _split_folder(value)
    stem = os.path.splitext(rest)[0]
    for key in load_registry()["models"]:
        for source in entry(key)["sources"]:
            if entry(key)["sources"][source].get("subdir") == rest:  # the folder a source's files go into
                return key, source
            for _, rel in local_targets(key, source):
                rel = rel.replace(os.sep, "/")
                tail = rel.split("/", 1)[1] if "/" in rel else rel
                if rest == tail or rest.startswith(tail + "/") or value == rel or value.startswith(rel + "/"):
                    return key, source
                if entry(key)["sources"][source].get("format") == "ckpt" and stem == os.path.splitext(tail)[0]:
                    return key, source  # the converted .safetensors of a pickled release
    base = os.path.basename(value)
    for key, e in load_registry()["models"].items():
        for source, src in e["sources"].items():
            if any(os.path.basename(f["path"]) == base for f in src.get("files", [])):
                return key, source
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
    so a saved workflow validates and the loader can say how to get a missing file). Names are relative to the
    folder, sub-folders included ('Genfocus/deblurNet.safetensors'); pickled releases are offered under the
    .safetensors name they get once converted."""
    names = set()
    for key, e in load_registry()["models"].items():
        for source, src in e["sources"].items():
            if src.get("folder") != folder or "files" not in src:
                continue
            for _, rel in local_targets(key, source):
                name = rel.replace(os.sep, "/").split("/", 1)[1]
                if src.get("format") == "ckpt":
                    name = os.path.splitext(name)[0] + ".safetensors"
                if name.endswith((".safetensors", ".sft")):
                    names.add(name)
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
    if "files" in src:  # flattened to the base name, unless the source keeps the repo's tree (keep_tree)
        return [(f["path"], os.path.join(folder, sub, f["path"] if src.get("keep_tree") else os.path.basename(f["path"])))
                for f in src["files"]]
    return [(None, os.path.join(folder, sub or src["repo"].split("/")[-1]))]


def file_revision(src: dict, repo_path: Optional[str]) -> Optional[str]:
    """The hub revision a source file is fetched from (None: the default branch)."""
    return next((f.get("revision") for f in src.get("files", []) if f["path"] == repo_path), None)


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
