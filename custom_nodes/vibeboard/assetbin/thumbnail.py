"""Asset thumbnails: the GLB drawn by Stagecraft's headless rasteriser from a three-quarter view that fits
the whole asset (bounding sphere inside a 40° field of view)."""
from __future__ import annotations

import math

import numpy as np

FOV_DEG = 40.0


def render_thumbnail(glb_path: str, size: int = 256) -> np.ndarray:
    """uint8 [size, size, 3]."""
    from ..stagecraft.blocking import look_at_c2w
    from ..stagecraft.previz import glb_triangles, rasterize

    tris, colours = glb_triangles(glb_path)
    if len(tris) == 0:
        raise ValueError(f"{glb_path}: no triangles to draw")
    pts = tris.reshape(-1, 3)
    centre = (pts.min(0) + pts.max(0)) / 2
    radius = max(float(np.linalg.norm(pts - centre, axis=1).max()), 1e-3)
    distance = radius / math.sin(math.radians(FOV_DEG) / 2) * 1.05
    direction = np.array([0.6, 0.55, 0.8])
    eye = centre + direction / np.linalg.norm(direction) * distance
    fx = (size / 2) / math.tan(math.radians(FOV_DEG) / 2)
    image, _ = rasterize(tris, colours, np.zeros(len(tris), int), look_at_c2w(eye, centre),
                         (fx, fx, (size - 1) / 2, (size - 1) / 2), size, size)
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
