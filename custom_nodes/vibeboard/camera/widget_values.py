"""Parsers for the values the VibeBoard canvas widgets (web/js/vibeboard_widgets.js) store in the workflow.

Both widgets keep a JSON string in an ordinary STRING widget, so the value lives in `widgets_values`
of the UI workflow and in the API prompt without any frontend needed to run it:

- camera path:  `{"points": [[x, y], ...]}` with x, y normalised to [0, 1] over the frame (y down);
  a bare list of points is accepted too.
- boxes:        `{"boxes": [{"x0", "y0", "x1", "y1", "label"?, "frame_start"?, "frame_end"?}, ...]}`
  normalised to [0, 1]; `[[x0, y0, x1, y1], ...]` is accepted too.
"""
from __future__ import annotations

import json


def _load(text, what: str):
    if isinstance(text, (list, dict)):
        return text
    text = (text or "").strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what}: not valid JSON ({exc.msg} at char {exc.pos})") from None


def _unit(v, what: str) -> float:
    v = float(v)
    if not (-0.5 <= v <= 1.5):  # allow drawing slightly outside the frame, reject pixel coordinates
        raise ValueError(f"{what}: coordinate {v} is not normalised to [0, 1]")
    return v


def parse_points(text) -> list:
    data = _load(text, "camera path points")
    if data is None:
        return []
    if isinstance(data, dict):
        data = data.get("points", [])
    points = []
    for p in data:
        if isinstance(p, dict):
            p = (p["x"], p["y"])
        if len(p) != 2:
            raise ValueError("camera path points: each point needs x and y")
        points.append([_unit(p[0], "camera path points"), _unit(p[1], "camera path points")])
    return points


def parse_boxes(text) -> list:
    data = _load(text, "boxes")
    if data is None:
        return []
    if isinstance(data, dict):
        data = data.get("boxes", [])
    boxes = []
    for i, b in enumerate(data):
        if isinstance(b, (list, tuple)):
            b = {"x0": b[0], "y0": b[1], "x1": b[2], "y1": b[3]}
        x0, y0, x1, y1 = (_unit(b[k], "boxes") for k in ("x0", "y0", "x1", "y1"))
        x0, x1 = sorted((x0, x1))
        y0, y1 = sorted((y0, y1))
        if x1 - x0 <= 0 or y1 - y0 <= 0:
            raise ValueError(f"boxes: box {i} has no area")
        box = {"x0": x0, "y0": y0, "x1": x1, "y1": y1, "label": str(b.get("label", ""))}
        for key in ("frame_start", "frame_end"):
            if b.get(key) is not None:
                box[key] = int(b[key])
        boxes.append(box)
    return boxes


def boxes_to_masks(boxes: list, num_frames: int, height: int, width: int):
    """[T, H, W] float masks (ComfyUI MASK) with 1 inside any box active on that frame."""
    import torch

    masks = torch.zeros(num_frames, height, width)
    for b in boxes:
        x0, x1 = int(round(b["x0"] * width)), int(round(b["x1"] * width))
        y0, y1 = int(round(b["y0"] * height)), int(round(b["y1"] * height))
        f0 = max(0, b.get("frame_start", 0))
        f1 = min(num_frames - 1, b.get("frame_end", num_frames - 1))
        masks[f0:f1 + 1, max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = 1.0
    return masks
