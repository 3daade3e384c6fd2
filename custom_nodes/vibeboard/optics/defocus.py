"""Defocus (circle-of-confusion) maps from depth and a focus specification — GenFocus' training-free part.

Thin-lens model: the blur-circle diameter of a point at distance z, when the lens focuses at d_f, is
proportional to |1/z - 1/d_f|. GenFocus writes it as `|K · (1/depth − 1/d_focus)|` and normalises by a
maximum CoC (their MAX_COC = 100) before clamping to [0, 1]. Here:

    coc_px(z) = K · |1/z − 1/d_f|             (diameter in pixels; K in "pixels · distance units")
    defocus   = clamp(coc_px / max_coc, 0, 1)  (the normalised map GenFocus feeds BokehNet)

so K = 20 means: a point 1 unit away is a 20 px disc when focused at infinity.

Everything works in *inverse depth* `inv` (bigger = nearer), which covers both depth conventions:
  - "metric": depth in scene units (metres), bigger = farther → inv = 1/z. Non-positive or non-finite
    values mean "no data" and are treated as infinitely far (inv = 0).
  - "disparity": relative disparity as Depth Anything V2 outputs it, bigger = nearer, arbitrary scale →
    inv = disparity / max(disparity) so the nearest surface sits at distance 1 (a relative unit); focus
    distances in this convention are in that unit.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

METRIC = "metric"
DISPARITY = "disparity"
CONVENTIONS = (METRIC, DISPARITY)
MIN_DEPTH = 1e-3          # closer than this (scene units) is clamped: guards 1/z against zeros
DEFAULT_MAX_COC = 100.0   # GenFocus' MAX_COC normaliser, in pixels


def inverse_depth(depth: torch.Tensor, convention: str = METRIC) -> torch.Tensor:
    """Depth [..., H, W] in `convention` → inverse depth (bigger = nearer, >= 0, finite)."""
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown depth convention {convention!r}; expected one of {CONVENTIONS}")
    depth = depth.float()
    finite = torch.isfinite(depth)
    if convention == METRIC:
        valid = finite & (depth > 0)
        inv = 1.0 / depth.clamp(min=MIN_DEPTH)
        return torch.where(valid, inv, torch.zeros_like(inv))
    disp = torch.where(finite, depth, torch.zeros_like(depth)).clamp(min=0)
    peak = disp.max()
    if float(peak) <= 0:
        return disp  # flat / empty map: everything at infinity
    return disp / peak


def robust_range(inv: torch.Tensor, low: float = 0.005, high: float = 0.995) -> tuple:
    """(far_inv, near_inv): low/high quantiles of inverse depth; a few outlier pixels don't move them."""
    flat = inv.reshape(-1)
    if flat.numel() > 2_000_000:  # torch.quantile refuses huge inputs; a strided sample is plenty
        flat = flat[:: math.ceil(flat.numel() / 2_000_000)]
    q = torch.quantile(flat.float(), torch.tensor([low, high], device=flat.device))
    return float(q[0]), float(q[1])


def focus_from_point(inv: torch.Tensor, x: float, y: float, window: Optional[int] = None) -> float:
    """Median inverse depth in a small window around (x, y) in 0..1 image coordinates.

    `inv` is [H, W] (or [B, H, W]: the first map is used). The window defaults to ~2 % of the short side
    (at least 3 px) so a click on a textured edge still lands on the surface most of the window sees.
    """
    if inv.dim() == 3:
        inv = inv[0]
    h, w = inv.shape
    if window is None:
        window = max(3, int(round(0.02 * min(h, w))) | 1)
    cx = min(max(int(round(float(x) * (w - 1))), 0), w - 1)
    cy = min(max(int(round(float(y) * (h - 1))), 0), h - 1)
    half = window // 2
    patch = inv[max(cy - half, 0): cy + half + 1, max(cx - half, 0): cx + half + 1]
    return float(patch.reshape(-1).median())


def focus_from_mask(inv: torch.Tensor, mask: torch.Tensor, threshold: float = 0.5) -> float:
    """Median inverse depth under the mask (GenFocus: median disparity inside the user mask)."""
    if inv.dim() == 3:
        inv = inv[0]
    if mask.dim() == 3:
        mask = mask[0]
    if mask.shape != inv.shape:
        mask = torch.nn.functional.interpolate(mask[None, None].float(), size=inv.shape, mode="bilinear",
                                               align_corners=False)[0, 0]
    selected = inv[mask.to(inv.device) > threshold]
    if selected.numel() == 0:
        raise ValueError("the focus mask is empty (no pixel above 0.5)")
    return float(selected.median())


def focus_from_distance(distance: float) -> float:
    """Focus distance (scene units, or relative units in the disparity convention) → inverse depth."""
    if not math.isfinite(distance) or distance <= 0:
        return 0.0  # focus at infinity
    return 1.0 / max(float(distance), MIN_DEPTH)


def signed_coc(inv: torch.Tensor, focus_inv, aperture_k: float) -> torch.Tensor:
    """Signed CoC diameter in pixels: K · (1/z − 1/d_f). Positive = nearer than the focal plane.

    `focus_inv` may be a float or a 1-D tensor of F focus settings → output [F, *inv.shape].
    """
    if isinstance(focus_inv, torch.Tensor) and focus_inv.dim() == 1:
        shape = (-1,) + (1,) * inv.dim()
        return aperture_k * (inv.unsqueeze(0) - focus_inv.to(inv).view(shape))
    return aperture_k * (inv - float(focus_inv))


def defocus_map(inv: torch.Tensor, focus_inv, aperture_k: float,
                max_coc: float = DEFAULT_MAX_COC) -> torch.Tensor:
    """GenFocus defocus map: clamp(|K · (1/z − 1/d_f)| / max_coc, 0, 1)."""
    if max_coc <= 0:
        raise ValueError("max_coc must be > 0")
    return (signed_coc(inv, focus_inv, aperture_k).abs() / float(max_coc)).clamp(0.0, 1.0)
