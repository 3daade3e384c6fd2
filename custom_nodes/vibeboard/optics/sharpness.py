"""Sharpness measures: per depth layer, per frame — how tests and the main job see focus move.

Laplacian variance of the luminance inside each layer's eroded mask: high when the layer's texture is
crisp, low when blurred. Erosion keeps pixels away from depth edges, where neighbouring layers' blur
legitimately spreads in.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

_LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


def erode(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Binary erosion of an [H, W] mask by a (2·pixels+1)² square."""
    m = mask.float()[None, None]
    if pixels > 0:
        m = -F.max_pool2d(-m, 2 * pixels + 1, stride=1, padding=pixels)
    return m[0, 0] > 0.5


def laplacian(frames: torch.Tensor) -> torch.Tensor:
    """[N, H, W, 3] images → [N, H, W] Laplacian of luminance (valid interior, replicate-padded)."""
    luma = (frames[..., 0] * 0.299 + frames[..., 1] * 0.587 + frames[..., 2] * 0.114).unsqueeze(1)
    luma = F.pad(luma, (1, 1, 1, 1), mode="replicate")
    return F.conv2d(luma, _LAPLACIAN.to(luma)[None, None])[:, 0]


def layer_sharpness(frames: torch.Tensor, labels: torch.Tensor, erosion: int = 3) -> torch.Tensor:
    """Laplacian variance per frame and label → [N, n_labels] (NaN for a label with no interior pixel)."""
    if frames.dim() == 3:
        frames = frames.unsqueeze(0)
    lap = laplacian(frames.float())
    n_labels = int(labels.max()) + 1
    out = torch.full((frames.shape[0], n_labels), float("nan"))
    for label in range(n_labels):
        region = erode(labels == label, erosion).to(lap.device)
        if int(region.sum()) < 4:
            continue
        out[:, label] = lap[:, region].var(dim=1).cpu()
    return out


def sharpest_frame_per_layer(frames: torch.Tensor, labels: torch.Tensor, erosion: int = 3) -> list:
    """Index of the frame where each label is sharpest (-1 for labels without an interior)."""
    score = layer_sharpness(frames, labels, erosion)
    return [int(score[:, k].argmax()) if not torch.isnan(score[:, k]).all() else -1
            for k in range(score.shape[1])]


def focus_peaks_by_depth(frames: torch.Tensor, labels: torch.Tensor, layer_depths, erosion: int = 3) -> list:
    """[(depth, sharpest frame index)] sorted near → far. A near → far rack focus gives non-decreasing
    frame indices (strictly increasing where the layers' blur differs)."""
    peaks = sharpest_frame_per_layer(frames, labels, erosion)
    return sorted(((float(layer_depths[k]), peaks[k]) for k in range(len(peaks)) if peaks[k] >= 0),
                  key=lambda item: item[0])


def moves_near_to_far(frames: torch.Tensor, labels: torch.Tensor, layer_depths, erosion: int = 3) -> bool:
    """True when each farther layer peaks no earlier than the nearer ones, and the nearest and farthest
    layers peak at different frames (focus really travelled)."""
    order = [frame for _, frame in focus_peaks_by_depth(frames, labels, layer_depths, erosion)]
    return all(a <= b for a, b in zip(order, order[1:])) and order[0] < order[-1]
