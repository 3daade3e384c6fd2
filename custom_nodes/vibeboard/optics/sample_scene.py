"""Procedural RGB-D sample scene: textured objects at known metric depths, deterministic from a seed.

Layers (label → depth): 0 background wall 40 m (dim noise, a fine grid and small bright lights that turn
into bokeh balls), 1 far panel 10 m, 2 mid disc 3 m, 3 near panel 1 m. Every object carries a high-contrast
checkerboard so its sharpness is measurable (see sharpness.py); the near panel overlaps the mid disc so
the scene has occlusion edges.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

LAYER_NAMES = ("background", "far", "mid", "near")
LAYER_DEPTHS = (40.0, 10.0, 3.0, 1.0)  # metres, per label


@dataclass
class RGBDScene:
    image: torch.Tensor   # [H, W, 3] float32 0..1
    depth: torch.Tensor   # [H, W] metric depth (m), bigger = farther
    labels: torch.Tensor  # [H, W] int64, index into LAYER_NAMES
    layer_depths: tuple = field(default=LAYER_DEPTHS)

    @property
    def near(self) -> float:
        return float(min(self.layer_depths))

    @property
    def far(self) -> float:
        return float(max(self.layer_depths))

    def mask(self, label: int) -> torch.Tensor:
        return self.labels == label


def _checker(height: int, width: int, cell: int, colour_a, colour_b, phase=(0, 0)) -> torch.Tensor:
    ys = torch.arange(height).view(-1, 1) + phase[0]
    xs = torch.arange(width).view(1, -1) + phase[1]
    board = ((ys // cell + xs // cell) % 2).float().unsqueeze(-1)
    a = torch.tensor(colour_a).view(1, 1, 3)
    b = torch.tensor(colour_b).view(1, 1, 3)
    return a * board + b * (1 - board)


def _value_noise(height: int, width: int, cells: int, gen: torch.Generator) -> torch.Tensor:
    coarse = torch.rand(1, 3, cells, max(2, cells * width // max(height, 1)), generator=gen)
    return F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)[0].permute(1, 2, 0)


def make_scene(width: int = 512, height: int = 288, seed: int = 0) -> RGBDScene:
    """Build the scene at any size (proportions scale with the image); same seed → same pixels."""
    if width < 16 or height < 16:
        raise ValueError("scene must be at least 16x16")
    gen = torch.Generator().manual_seed(int(seed))
    jitter = (torch.rand(8, generator=gen) - 0.5) * 0.04  # small seed-dependent layout changes
    unit = min(width, height)
    ys = torch.arange(height, dtype=torch.float32).view(-1, 1)
    xs = torch.arange(width, dtype=torch.float32).view(1, -1)

    # background: a dim blue-grey wall with soft noise and a fine grid (so its sharpness is measurable)
    noise = _value_noise(height, width, 5, gen)
    image = torch.tensor([0.16, 0.18, 0.24]) + 0.16 * noise + 0.05 * noise.mean(-1, keepdim=True)
    grid = _checker(height, width, max(2, unit // 40), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    image = image * (0.7 + 0.3 * grid)
    labels = torch.zeros(height, width, dtype=torch.int64)
    lights = torch.rand(18, 2, generator=gen)
    for lx, ly in lights.tolist():  # small bright lights on the wall: out of focus they become bokeh balls
        cx, cy = lx * width, ly * height
        dot = ((xs - cx) ** 2 + (ys - cy) ** 2) <= max(1.0, unit / 70) ** 2
        image[dot] = torch.tensor([1.0, 0.9, 0.7])

    def paint(region: torch.Tensor, texture: torch.Tensor, label: int) -> None:
        image[region] = texture[region]
        labels[region] = label

    # far panel (10 m): blue/white fine checker
    x0, x1 = (0.60 + jitter[0]) * width, (0.93 + jitter[1]) * width
    y0, y1 = (0.12 + jitter[2]) * height, (0.62 + jitter[3]) * height
    far = (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)
    paint(far, _checker(height, width, max(2, unit // 32), (0.15, 0.3, 0.85), (0.9, 0.92, 0.95)), 1)

    # mid disc (3 m): green/black checker
    cx, cy, radius = (0.47 + jitter[4]) * width, (0.50 + jitter[5]) * height, 0.27 * unit
    mid = ((xs - cx) ** 2 + (ys - cy) ** 2) <= radius ** 2
    paint(mid, _checker(height, width, max(2, unit // 24), (0.2, 0.8, 0.25), (0.05, 0.08, 0.05)), 2)

    # near panel (1 m): red/yellow checker, overlapping the mid disc's left edge
    x0, x1 = (0.04 + jitter[6]) * width, cx - 0.8 * radius
    y0, y1 = (0.30 + jitter[7]) * height, 0.97 * height
    near = (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)
    paint(near, _checker(height, width, max(2, unit // 20), (0.95, 0.2, 0.1), (0.98, 0.85, 0.2)), 3)

    depth = torch.tensor(LAYER_DEPTHS, dtype=torch.float32)[labels]
    return RGBDScene(image=image.clamp(0, 1).float().contiguous(), depth=depth, labels=labels)
