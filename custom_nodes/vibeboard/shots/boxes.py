"""`VB_BOXES`: per-shot bounding boxes with a label and prompt each, optionally keyframed over time.

Coordinates are normalised to the frame (x0, y0, x1, y1 in 0..1), so one blocking file serves any resolution.
A box either has one fixed `box` or `keyframes` [{frame, box}] interpolated linearly per frame (held before the
first and after the last keyframe).

JSON blocking file (import/export):
    {"format": "vibeboard.boxes", "version": 1, "units": "normalized" | "pixels", "width": W, "height": H,
     "shots": {"1": [{"label": "hero", "prompt": "a knight in red armour", "box": [0.1, 0.2, 0.4, 0.9]},
                     {"label": "dog", "prompt": "...", "keyframes": [{"frame": 0, "box": [...]}, ...]}]}}
A bare list of boxes (no "shots") is one shot. With "units": "pixels", width/height normalise the values.
The Boxes (Draw) widget's JSON ({"boxes": [{x0, y0, x1, y1, label, frame_start, frame_end}]}) is read too;
`frame_start` / `frame_end` (inclusive) limit the frames a box is active on.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Optional

import torch

FORMAT = "vibeboard.boxes"


@dataclass
class Box:
    label: str = ""
    prompt: str = ""
    keyframes: list = field(default_factory=list)  # [(frame, (x0, y0, x1, y1))] sorted by frame
    frame_start: Optional[int] = None               # active range (inclusive); None = whole shot
    frame_end: Optional[int] = None

    def active(self, frame: int) -> bool:
        return (self.frame_start is None or frame >= self.frame_start) and \
            (self.frame_end is None or frame <= self.frame_end)

    def at(self, frame: float) -> tuple:
        """The box at a (pixel) frame index, linearly interpolated between keyframes."""
        if not self.keyframes:
            raise ValueError(f"box {self.label!r} has no coordinates")
        ks = self.keyframes
        if frame <= ks[0][0]:
            return tuple(ks[0][1])
        if frame >= ks[-1][0]:
            return tuple(ks[-1][1])
        for (f0, b0), (f1, b1) in zip(ks, ks[1:]):
            if f0 <= frame <= f1:
                a = (frame - f0) / max(f1 - f0, 1e-9)
                return tuple((1 - a) * p + a * q for p, q in zip(b0, b1))
        return tuple(ks[-1][1])

    def to_json(self) -> dict:
        d = {"label": self.label, "prompt": self.prompt}
        if len(self.keyframes) == 1 and self.keyframes[0][0] == 0:
            d["box"] = list(self.keyframes[0][1])
        else:
            d["keyframes"] = [{"frame": f, "box": list(b)} for f, b in self.keyframes]
        if self.frame_start is not None:
            d["frame_start"] = self.frame_start
        if self.frame_end is not None:
            d["frame_end"] = self.frame_end
        return d


@dataclass
class BoxSet:
    boxes: list = field(default_factory=list)
    shot: str = ""

    def __len__(self):
        return len(self.boxes)

    def to_json(self) -> dict:
        return {"format": FORMAT, "version": 1, "units": "normalized",
                "shots": {self.shot or "1": [b.to_json() for b in self.boxes]}}


def _norm_box(values, units: str, width: Optional[float], height: Optional[float]) -> tuple:
    if len(values) != 4:
        raise ValueError(f"a box needs 4 numbers [x0, y0, x1, y1], got {values!r}")
    x0, y0, x1, y1 = (float(v) for v in values)
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise ValueError(f"box coordinates must be finite numbers, got {values!r}")
    if units == "pixels":
        if not width or not height:
            raise ValueError("'units': 'pixels' needs 'width' and 'height'")
        x0, x1, y0, y1 = x0 / width, x1 / width, y0 / height, y1 / height
    x0, x1 = sorted((x0, x1))
    y0, y1 = sorted((y0, y1))
    return (x0, y0, x1, y1)


def _parse_box(d: dict, units, width, height) -> Box:
    if "keyframes" in d:
        ks = [(float(k["frame"]), _norm_box(k["box"], units, width, height)) for k in d["keyframes"]]
    elif "box" in d:
        ks = [(0.0, _norm_box(d["box"], units, width, height))]
    elif all(k in d for k in ("x0", "y0", "x1", "y1")):
        ks = [(0.0, _norm_box([d["x0"], d["y0"], d["x1"], d["y1"]], units, width, height))]
    else:
        raise ValueError(f"box {d.get('label', '')!r} has neither 'box' nor 'keyframes'")
    ks.sort(key=lambda k: k[0])
    fs, fe = d.get("frame_start"), d.get("frame_end")
    return Box(label=str(d.get("label", "")), prompt=str(d.get("prompt", "")), keyframes=ks,
               frame_start=None if fs is None else int(fs), frame_end=None if fe is None else int(fe))


def parse_boxes(data, shot: str = "") -> BoxSet:
    """JSON text or a parsed object -> BoxSet for one shot (the first one when `shot` is empty)."""
    if isinstance(data, (str, bytes)):
        data = json.loads(data)
    if isinstance(data, list):
        data = {"shots": {"1": data}}
    units = data.get("units", "normalized")
    width, height = data.get("width"), data.get("height")
    shots = data.get("shots")
    if shots is None:
        shots = {"1": data.get("boxes", [])}
    if not shots:
        return BoxSet([], shot)
    key = str(shot) if shot else next(iter(shots))
    if key not in shots:
        raise KeyError(f"shot {key!r} not in the blocking file (shots: {', '.join(map(str, shots))})")
    return BoxSet([_parse_box(b, units, width, height) for b in shots[key]], key)


def load_boxes(path: str, shot: str = "") -> BoxSet:
    with open(path, encoding="utf-8") as f:
        return parse_boxes(f.read(), shot)


def save_boxes(boxset: BoxSet, path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(boxset.to_json(), f, indent=2)


# ---- masks -------------------------------------------------------------------------------------------------

def pixel_masks(boxset: BoxSet, num_frames: int, height: int, width: int) -> torch.Tensor:
    """[n_boxes, F, H, W] float {0,1}: pixel (i, j) is inside when its centre lies in the box."""
    ys = (torch.arange(height, dtype=torch.float32) + 0.5) / height
    xs = (torch.arange(width, dtype=torch.float32) + 0.5) / width
    out = torch.zeros(len(boxset), num_frames, height, width)
    for b, box in enumerate(boxset.boxes):
        for f in range(num_frames):
            if not box.active(f):
                continue
            x0, y0, x1, y1 = box.at(f)
            iy = (ys >= y0) & (ys < y1)
            ix = (xs >= x0) & (xs < x1)
            out[b, f] = (iy[:, None] & ix[None, :]).float()
    return out


def union(masks: torch.Tensor) -> torch.Tensor:
    """[n, ...] -> [...] (max over boxes); zeros when there are no boxes."""
    return masks.amax(dim=0) if masks.shape[0] else torch.zeros(masks.shape[1:])


def latent_masks(pixel: torch.Tensor, temporal: int = 4, spatial: int = 8) -> torch.Tensor:
    """Pixel masks [n, F, H, W] -> latent-grid masks [n, T, H/8, W/8] for Wan's causal VAE.

    Latent frame 0 covers pixel frame 0, latent frame t >= 1 covers frames 4t-3 .. 4t. A latent cell is inside
    when any pixel it covers, in any frame it covers, is inside (conservative: the region to generate may grow,
    never shrink, so nothing inside a box is forced to the plate).
    """
    n, F, H, W = pixel.shape
    T = (F - 1) // temporal + 1
    sp = torch.nn.functional.max_pool2d(pixel.reshape(n * F, 1, H, W), spatial).reshape(n, F, H // spatial, W // spatial)
    out = torch.zeros(n, T, H // spatial, W // spatial)
    out[:, 0] = sp[:, 0]
    for t in range(1, T):
        out[:, t] = sp[:, 4 * t - 3:4 * t + 1].amax(dim=1)
    return out


def token_masks(latent: torch.Tensor, patch=(1, 2, 2)) -> torch.Tensor:
    """Latent masks [n, T, h, w] -> transformer-token masks [n, T*h/2*w/2] (bool), in diffusers' token order."""
    n, T, h, w = latent.shape
    pooled = torch.nn.functional.max_pool3d(latent.unsqueeze(1), kernel_size=patch).squeeze(1)
    return pooled.flatten(1) > 0.5
