"""Weights-free instance masks from geometry: what stands on the floor and is not a wall.

The floor is the largest plane facing up (RANSAC in geometry.py); walls are large planes facing sideways.
Everything else above the floor, split where the depth jumps, falls into connected regions: one per object.
It finds boxes and furniture in a clean room; clutter that touches needs SAM (sam_masks.py).
"""
from __future__ import annotations

import torch

from .geometry import fit_plane_ransac


def geometric_instances(world_points: torch.Tensor, depth: torch.Tensor, min_pixels: int = 40,
                        floor_tolerance: float = 0.03, wall_fraction: float = 0.15, max_walls: int = 4,
                        depth_jump: float = 0.05, seed: int = 0) -> torch.Tensor:
    """world_points [H, W, 3] (floor at y = 0, Y up) → instance masks [K, H, W] bool, largest first."""
    from scipy import ndimage

    h, w = depth.shape
    candidate = world_points[..., 1] > floor_tolerance
    rest = candidate.clone()
    for _ in range(int(max_walls)):  # peel off walls: large vertical planes that run out of the top of the view
        if int(rest.sum()) < min_pixels:
            break
        normal, offset, inliers = fit_plane_ransac(world_points[rest], iterations=150, threshold=floor_tolerance,
                                                   seed=seed)
        full = torch.zeros(h, w, dtype=torch.bool)
        full[rest] = inliers
        reaches_top = bool(full[: max(1, h // 20)].any())
        if abs(float(normal[1])) > 0.3 or not (reaches_top or int(inliers.sum()) >= wall_fraction * h * w):
            break  # the largest plane left is an object's face, not a wall
        rest &= ~full
    # cut along depth discontinuities so touching-in-image objects at different depths separate
    d = depth.double()
    jump = torch.zeros(h, w, dtype=torch.bool)
    rel = depth_jump * d
    jump[:, 1:] |= (d[:, 1:] - d[:, :-1]).abs() > rel[:, 1:]
    jump[1:, :] |= (d[1:, :] - d[:-1, :]).abs() > rel[1:, :]
    labels, count = ndimage.label((rest & ~jump).numpy())
    labels = torch.from_numpy(labels)
    masks = [labels == i for i in range(1, count + 1)]
    masks = [m for m in masks if int(m.sum()) >= min_pixels]
    if not masks:
        return torch.zeros(0, h, w, dtype=torch.bool)
    masks.sort(key=lambda m: -int(m.sum()))
    # give back the jump pixels to the object they border (the region growing above dropped them)
    grown = []
    for m in masks:
        dil = torch.from_numpy(ndimage.binary_dilation(m.numpy(), iterations=1))
        grown.append(m | (dil & jump & rest))
    return torch.stack(grown)


def order_left_to_right(masks: torch.Tensor) -> torch.Tensor:
    """Stable object order for naming: by mask centroid x, then y."""
    if len(masks) == 0:
        return masks
    ys, xs = torch.meshgrid(torch.arange(masks.shape[1]), torch.arange(masks.shape[2]), indexing="ij")
    area = masks.flatten(1).sum(1).clamp_min(1)
    cx = (masks * xs).flatten(1).sum(1) / area
    cy = (masks * ys).flatten(1).sum(1) / area
    order = sorted(range(len(masks)), key=lambda i: (float(cx[i]), float(cy[i])))
    return masks[order]
