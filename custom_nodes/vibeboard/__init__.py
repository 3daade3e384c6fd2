"""VibeBoard node pack: one sub-package per studio module, each with a thin `nodes.py`.

Every sub-package that has a `nodes.py` exporting NODE_CLASS_MAPPINGS is picked up here, so adding a
module never means editing a central list. A module that fails to import is reported in IMPORT_ERRORS
(and logged) instead of taking the whole pack down, the way ComfyUI treats a broken pack.
"""
from __future__ import annotations

import importlib
import logging
import pkgutil

__version__ = "0.1.0"

log = logging.getLogger("vibeboard")

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
IMPORT_ERRORS: dict = {}


def _discover() -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.ispkg or info.name.startswith("_") or info.name == "common":
            continue
        name = f"{__name__}.{info.name}.nodes"
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # a helper package without nodes
            IMPORT_ERRORS[info.name] = f"{type(exc).__name__}: {exc}"
            log.warning("VibeBoard: module %s failed to import: %s", info.name, exc)
            continue
        except Exception as exc:  # keep the rest of the pack usable
            IMPORT_ERRORS[info.name] = f"{type(exc).__name__}: {exc}"
            log.warning("VibeBoard: module %s failed to import: %s", info.name, exc)
            continue
        for key, cls in getattr(module, "NODE_CLASS_MAPPINGS", {}).items():
            if key in NODE_CLASS_MAPPINGS and NODE_CLASS_MAPPINGS[key] is not cls:
                raise RuntimeError(f"VibeBoard: node name {key!r} defined twice")
            NODE_CLASS_MAPPINGS[key] = cls
        NODE_DISPLAY_NAME_MAPPINGS.update(getattr(module, "NODE_DISPLAY_NAME_MAPPINGS", {}))


_discover()


def _hook_comfy_unload() -> None:
    """Inside ComfyUI, "Unload Models" / POST /free also releases VibeBoard's models (models/release.py)."""
    try:
        from .models import release
        release.hook_comfy()
    except Exception as exc:  # never stop the pack from loading
        log.warning("VibeBoard: could not hook ComfyUI's model unloading: %s", exc)


_hook_comfy_unload()


def _sample_inputs_for_comfyui() -> None:
    """Inside ComfyUI: the shipped workflows' sample inputs into its input folder (missing files only)."""
    import sys
    folder_paths = sys.modules.get("folder_paths")
    if folder_paths is None:
        return
    try:
        from .common import sample_inputs
        sample_inputs.ensure(folder_paths.get_input_directory())
    except Exception as exc:
        log.warning("VibeBoard: could not write the sample inputs: %s", exc)


_sample_inputs_for_comfyui()
