"""Note → re-render: a review note (+ its drawn shapes) becomes a proposed job: the version's recipe with the
changed inputs, ready for the runner (or DirectorAgent) to submit. The result lands as the next version of the
same stack (`DailiesStore.land_rerender`), linked to the note, which resolves only when that version is approved.

Routing is deterministic (no LLM needed): a note about the camera (pan, tilt, dolly, orbit, angle, …) goes to
InfCam's Change Camera; a note with a drawn region goes to Qwen-Image-Edit with that region as the mask on the
note's frames; anything else is a re-generation of the shot with the note appended to its prompt and a new seed.
"""
from __future__ import annotations

import copy
import re
from typing import List, Optional

import numpy as np

from .store import DailiesError, DailiesStore

CAMERA_WORDS = ("camera", "pan", "tilt", "dolly", "orbit", "zoom", "angle", "truck", "crane", "push in",
                "pull out", "framing", "lens")
ROUTES = {
    "infcam": {"node": "VBChangeCamera", "workflow": "vfx_suite", "needs": "InfCam weights (Wan2.1-T2V-1.3B)"},
    "qwen_edit": {"node": "VBQwenEdit", "workflow": "vfx_suite", "needs": "Qwen-Image-Edit weights"},
    "regenerate": {"node": None, "workflow": None, "needs": "the shot's own generator weights"},
}


def route(text: str, has_region: bool) -> str:
    lowered = text.lower()
    if any(re.search(r"\b" + re.escape(word) + r"\b", lowered) for word in CAMERA_WORDS):
        return "infcam"
    return "qwen_edit" if has_region else "regenerate"


def region_box(shapes: List[dict]) -> Optional[List[float]]:
    """The union bounding box [x0, y0, x1, y1] (0..1) of the drawn shapes, or None."""
    points = [p for s in shapes if s["type"] != "text" for p in s["points"]]
    if not points:
        return None
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return [min(xs), min(ys), max(xs), max(ys)]


def region_mask(box: List[float], frames: int, height: int, width: int, start: int, end: int) -> np.ndarray:
    """MASK [frames, H, W] float: 1 inside the box on frames start..end, 0 elsewhere."""
    mask = np.zeros((frames, height, width), dtype=np.float32)
    x0, y0 = int(np.floor(box[0] * width)), int(np.floor(box[1] * height))
    x1, y1 = int(np.ceil(box[2] * width)), int(np.ceil(box[3] * height))
    mask[max(start, 0):min(end + 1, frames), y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)] = 1.0
    return mask


def propose(store: DailiesStore, note_id: int, seed_step: int = 1) -> dict:
    """Turn note `note_id` into a stored re-render request: {"route", "recipe", "changes", ...}."""
    note = store.note(note_id)
    if note["status"] != "open":
        raise DailiesError(f"note {note_id} is already resolved")
    version = store.version(note["version_id"])
    shapes = [a["shape"] for a in store.annotations(note_id=note_id)]
    box = region_box(shapes)
    kind = route(note["text"], box is not None)
    recipe = copy.deepcopy(version["recipe"])
    changes = {"instruction": note["text"], "frame_range": [note["start_frame"], note["end_frame"]]}
    if kind == "qwen_edit":
        changes.update({"mask_box": box, "edit_prompt": note["text"]})
    elif kind == "infcam":
        changes.update({"camera_instruction": note["text"]})
    else:
        prompt = str(recipe.get("prompt", "")).strip()
        changes["prompt"] = (prompt + ". " if prompt else "") + note["text"]
        changes["seed"] = int(recipe.get("seed", 0)) + seed_step
        recipe["prompt"], recipe["seed"] = changes["prompt"], changes["seed"]
    recipe["parent"] = version["id"]
    recipe["from_note"] = note_id
    request = {"route": kind, **ROUTES[kind], "source_version": version["id"], "shot": version["shot"],
               "recipe": recipe, "changes": changes, "note_id": note_id}
    return store.save_rerender(note_id, version["id"], request)
