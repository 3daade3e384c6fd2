"""Give memory back: ComfyUI's "Unload Models" / POST /free must release VibeBoard's models too.

`release_all()` offloads (free_memory) or drops (unload_models) everything the VRAM manager holds and clears the
pack's own caches (depth models, parsed LoRAs). Inside ComfyUI, `hook_comfy()` wraps
`comfy.model_management.unload_all_models` — what ComfyUI calls for POST /free {"unload_models": true} and the
"Unload Models" button — so that it calls `release_all` as well. comfy is never imported here: the hook uses the
module ComfyUI has already loaded (sys.modules), so outside ComfyUI it does nothing. Our own server's POST /free
calls `release_all` directly.
"""
from __future__ import annotations

import gc
import sys

HOOK_FLAG = "_vibeboard_release_hook"


def release_all(unload: bool = True, free_memory: bool = True) -> dict:
    """Free the device memory VibeBoard holds. Returns {"freed_bytes", "unloaded", "caches_cleared"}."""
    import torch

    from . import vram

    out = vram.handle_free_request({"unload_models": unload, "free_memory": free_memory or unload})
    cleared = []
    if unload:
        for module_name, attr in (("vibeboard.optics.depth_estimation", "_cache"), ("vibeboard.models.lora", "_lora_cache")):
            module = sys.modules.get(module_name)
            cache = getattr(module, attr, None) if module else None
            if cache:
                cache.clear()
                cleared.append(module_name.rsplit(".", 1)[-1])
        gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return {**out, "caches_cleared": cleared}


def hook_comfy() -> bool:
    """Make ComfyUI's unload_all_models release VibeBoard's models too (once; True when the hook is in place)."""
    mm = sys.modules.get("comfy.model_management")
    if mm is None or not hasattr(mm, "unload_all_models"):
        return False
    original = mm.unload_all_models
    if getattr(original, HOOK_FLAG, False):
        return True

    def unload_all_models(*args, **kwargs):
        result = original(*args, **kwargs)
        try:
            release_all(unload=True)
        except Exception as exc:  # never break ComfyUI's own unload
            import logging
            logging.getLogger("vibeboard").warning("VibeBoard: releasing models failed: %s", exc)
        return result

    setattr(unload_all_models, HOOK_FLAG, True)
    unload_all_models.__wrapped__ = original
    mm.unload_all_models = unload_all_models
    return True
