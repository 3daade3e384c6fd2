"""Small helpers shared by the Shot Studio node files (paths, ui entries, placeholders)."""
from __future__ import annotations

import os

import torch

from ..common import runtime

CATEGORY = "VibeBoard/Shots"


def data_dir(node: str, input_name: str, value: str) -> str:
    """A persistent folder: absolute, or relative to the output directory (so it travels with the outputs)."""
    value = (value or "").strip()
    if not value:
        raise runtime.NodeInputError(node, input_name, "give a folder (absolute, or relative to the output folder)")
    if os.path.isabs(os.path.expanduser(value)):
        return runtime.user_path(node, input_name, value, runtime.output_directory())
    base = os.path.abspath(runtime.output_directory())
    full = os.path.abspath(os.path.join(base, value))
    if os.path.commonpath([full, base]) != base:
        raise runtime.NodeInputError(node, input_name, f"'{value}' points outside the output folder")
    return full


def save_to_folder(store, node: str, input_name: str, folder_text: str, written_file: str) -> dict:
    """Save a persistent memory (story bank, location) to the folder given, or to its own; ui lists the file."""
    folder = data_dir(node, input_name, folder_text) if (folder_text or "").strip() else store.path
    if not folder:
        raise runtime.NodeInputError(node, input_name, "this memory has no folder yet: give one")
    home = store.path
    try:
        store.save(folder)
    finally:  # save() re-homes the object; this one is an (often cached) upstream output: leave it as it was
        store.path = home
    return {"ui": {"files": [file_entry(os.path.join(folder, written_file))]}, "result": ()}


def file_entry(path: str) -> dict:
    """ComfyUI ui entry {filename, subfolder, type} for a file under the output directory."""
    base = os.path.abspath(runtime.output_directory())
    full = os.path.abspath(path)
    if os.path.commonpath([full, base]) == base:
        rel = os.path.relpath(full, base)
        return {"filename": os.path.basename(rel), "subfolder": os.path.dirname(rel), "type": "output"}
    return {"filename": os.path.basename(full), "subfolder": os.path.dirname(full), "type": "output"}


def input_file(node: str, input_name: str, value: str) -> str:
    """A file given by name in the input directory, or an absolute path."""
    value = (value or "").strip()
    path = runtime.user_path(node, input_name, value, runtime.input_directory())
    if not os.path.isfile(path):
        raise runtime.NodeInputError(node, input_name, f"file not found: {path}")
    return path


def model_folder(node: str, input_name: str, name: str, folder: str) -> str:
    """A model file or folder by name in models/<folder> (our dir, then ComfyUI's), or an absolute path."""
    from ..models import registry
    try:
        path = registry.resolve(name, folder) if name else None
    except ValueError as exc:
        raise runtime.NodeInputError(node, input_name, str(exc)) from None
    if path is None:
        where = registry.expected_location(name, folder) if name else os.path.join(runtime.models_directory(), folder)
        raise runtime.NodeInputError(node, input_name, f"model not found: expected {where}{registry.pull_hint(name or '')}")
    return path


def blank_images(n: int = 1, height: int = 64, width: int = 64, value: float = 0.0) -> torch.Tensor:
    return torch.full((max(n, 1), height, width, 3), float(value))


def mtime(path: str) -> float:
    try:
        return os.path.getmtime(path)
    except OSError:
        return 0.0


def hf_folders(folder: str) -> list:
    """Hugging Face model folders (with config.json) under models/<folder>, for a dropdown."""
    from ..models import registry
    names = []
    for d in registry.folder_dirs(folder):
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            if os.path.isfile(os.path.join(d, name, "config.json")) and name not in names:
                names.append(name)
    return names


def lora_names() -> list:
    """LoRA files present, then the registry's LoRA names not pulled yet (a saved workflow naming a published LoRA
    validates on a fresh install; running it says which `vibeboard models pull` gets the file)."""
    from ..models import registry
    return registry.choices("loras")
