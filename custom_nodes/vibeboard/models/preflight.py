"""Missing weights, one clear message: every model file a workflow names, checked before anything runs.

One table (MODEL_INPUTS) says which node inputs name model files and in which model folder they live; `missing()`
walks a prompt (API format) and returns every file that is not in any root (our models dir, ComfyUI's folders,
extra_model_paths.yaml), with the node, the input, where the file is expected and the `vibeboard models pull`
command that puts it there. The runner calls it before executing (all missing files in one error) and loaders call
`raise_missing()` so that, inside ComfyUI too, the first loader that finds a file missing reports the whole
workflow's missing files at once (it gets the prompt through the hidden PROMPT input).
"""
from __future__ import annotations

import os
from typing import Optional

from ..common.runtime import NodeInputError
from . import registry

# class_type → {input: (model folder, "file" | "dir" | "lora")}. Values "none"/"" and the Wan loader's
# "(from diffusers folder)" mean "not used".
MODEL_INPUTS = {
    "VBWanModelLoader": {"model": ("diffusion_models", "file"), "vae": ("vae", "file"),
                         "text_encoder": ("text_encoders", "file"), "clip_vision": ("clip_vision", "file"),
                         "model_2": ("diffusion_models", "file")},
    "VBWanLoRA": {"lora_name": ("loras", "lora")},
    "VBStoryMemLoRA": {"high_noise_lora": ("loras", "lora"), "low_noise_lora": ("loras", "lora")},
    "VBReCoLoRA": {"lora_name": ("loras", "lora")},
    "VBInfCamLoader": {"checkpoint": ("checkpoints", "file"), "vae": ("vae", "file"),
                       "text_encoder": ("text_encoders", "file"), "tokenizer": ("text_encoders", "dir"),
                       "base_transformer": ("diffusion_models", "file")},
    "VBGenFocusLoader": {"flux_folder": ("diffusers", "dir"), "deblur_lora": ("loras", "lora"),
                         "bokeh_lora": ("loras", "lora")},
    "VBLearn2RefocusLoader": {"unet_folder": ("diffusers", "dir"), "svd_folder": ("diffusers", "dir")},
    "VBQwenEditLoader": {"folder": ("diffusers", "dir"), "transformer_file": ("diffusion_models", "file"),
                         "vae_file": ("vae", "file")},
    "VBDepthEstimate": {"model": ("depth", "dir")},
    "VBTalkingHead": {"adapter": ("diffusion_models", "file"), "wav2vec": ("checkpoints", "file")},  # folder or a file in it
}
UNUSED = {"", "none", "(from diffusers folder)"}
# class_type → (input that, when wired, makes the loader ignore these file inputs)
IGNORED_WHEN_LINKED = {"VBInfCamLoader": ("wan", ("vae", "text_encoder", "tokenizer", "base_transformer"))}


class MissingModelsError(NodeInputError):
    """One or more model files are missing; `items` lists each (node, input, expected path, pull command)."""

    def __init__(self, items: list):
        self.items = items
        first = items[0]
        if len(items) == 1:
            msg = describe(first)
        else:
            msg = f"{len(items)} model files missing in this workflow:\n  " + "\n  ".join(describe(i) for i in items)
        super().__init__(first["class_type"], first["input"], msg)
        self.args = (msg,)

    def __str__(self):
        return self.args[0]


def describe(item: dict) -> str:
    """'[node 3 ]Title (Class): input 'x': 'value' not found; expected at PATH — `vibeboard models pull NAME`'."""
    pull = f" — `{item['pull']}`" if item.get("pull") else " (not in the registry: put the file there yourself)"
    title = item.get("title") or item["class_type"]
    where = f"node {item['node']} " if item.get("node") not in (None, "?") else ""
    return (f"{where}{title}: input '{item['input']}': '{item['value']}' not found; "
            f"expected at {item['expected']}{pull}")


def check(class_type: str, input_name: str, value, node_id: str = "?") -> Optional[dict]:
    """None when the value is unused or found; else the missing-file record."""
    spec = MODEL_INPUTS.get(class_type, {}).get(input_name)
    if spec is None or not isinstance(value, str) or value.strip() in UNUSED:
        return None
    folder, kind = spec
    try:
        path = registry.resolve(value, folder)
    except ValueError:
        path = None
    if path is not None and (kind != "dir" or os.path.isdir(path)):
        return None
    return {"node": str(node_id), "class_type": class_type, "input": input_name, "value": value,
            "expected": registry.expected_location(value, folder), "pull": registry.pull_command(value),
            "folder": folder}


def _needed(prompt: dict, outputs) -> set:
    """The nodes the given outputs depend on (themselves included)."""
    seen, stack = set(), [str(o) for o in outputs]
    while stack:
        nid = stack.pop()
        if nid in seen or nid not in prompt:
            continue
        seen.add(nid)
        for value in (prompt[nid].get("inputs") or {}).values():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[1], int):
                stack.append(str(value[0]))
    return seen


def missing(prompt: dict, outputs=None) -> list:
    """Every missing model file in an API-format prompt (links and unknown nodes are skipped); with `outputs`,
    only in the nodes those outputs need."""
    out = []
    needed = _needed(prompt, outputs) if outputs is not None else None
    for node_id, node in (prompt or {}).items():
        if not isinstance(node, dict) or (needed is not None and str(node_id) not in needed):
            continue
        class_type = node.get("class_type")
        inputs = node.get("inputs") or {}
        link, ignored = IGNORED_WHEN_LINKED.get(class_type, (None, ()))
        for name, value in inputs.items():
            if name in ignored and isinstance(inputs.get(link), list):
                continue
            item = check(class_type, name, value, node_id)
            if item:
                out.append(item)
    return out


def raise_missing(class_type: str, input_name: str, value: str, prompt: Optional[dict] = None,
                  node_id: Optional[str] = None, title: Optional[str] = None) -> None:
    """Called by a loader that cannot find a file: raise one error naming it and every other missing file of the
    workflow (when the loader was given the prompt)."""
    items = missing(prompt) if prompt else []
    if node_id is None:  # the loader's own node: the prompt entry with this class, input and value
        node_id = next((i["node"] for i in items if i["class_type"] == class_type and i["input"] == input_name
                        and i["value"] == value), None)
    own = check(class_type, input_name, value, node_id or "?")
    if own is None:  # in the table but found by a looser rule in the loader: still report this input
        own = {"node": str(node_id or "?"), "class_type": class_type, "input": input_name, "value": value,
               "expected": value, "pull": None}
    own["title"] = title
    items = [i for i in items if not (i["class_type"] == class_type and i["input"] == input_name
                                      and i["value"] == value)]
    items.insert(0, own)
    raise MissingModelsError(items)


def validation_errors(items: list) -> dict:
    """ComfyUI-shaped node_errors for the missing files (one entry per node)."""
    errors: dict = {}
    for item in items:
        entry = errors.setdefault(item["node"], {"errors": [], "dependent_outputs": [],
                                                 "class_type": item["class_type"]})
        entry["errors"].append({"type": "model_missing", "message": "Model file missing", "details": describe(item),
                                "extra_info": {"input_name": item["input"], "expected": item["expected"],
                                               "pull": item["pull"]}})
    return errors


def validate_model_name(class_type: str, input_name: str, value) -> "bool | str":
    """For a node's VALIDATE_INPUTS: True when the file is there or is a registry name not pulled yet (the run's
    preflight then says how to get it); else the missing-file message. Declaring the input in VALIDATE_INPUTS also
    replaces ComfyUI's generic "Value not in list" for a file that is simply not in the folder."""
    item = check(class_type, input_name, value)
    if item is None or (item["folder"] in registry.FOLDERS and value in registry.known_files(item["folder"])):
        return True
    return describe(item)
