"""Focus inspection — the measurable half of "Fix Focus" (DiffCamera has no public code or weights).

Blur is measured with the re-blur principle: blurring an image again by a known Gaussian σ_r removes a lot
of gradient energy where the image is sharp and little where it is already soft. For a step edge blurred by
a Gaussian σ_b the gradient energy is ∝ 1/σ_b, so with ρ = E|∇(G_σr * I)|² / E|∇I|² per tile

    σ_b = σ_r · ρ / sqrt(1 − ρ²)          (pixels of the analysis image)

which is independent of the texture's contrast. Tiles without texture (E|∇I|² tiny) are "unknown".

With a depth map the thin-lens model blur ≈ σ0 + K·|1/z − 1/z_f| is fitted over the tiles (grid search on
the focal inverse depth, least squares for K, σ0) to estimate where the lens was focused.
Per shot, `inspect_shot` turns that into Dailies warnings (soft subject, front/back focus, all soft, hunting).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

REBLUR_SIGMA = 2.0
ANALYSIS_LONG_SIDE = 512
MIN_TEXTURE = 1e-4  # gradient energy below this (luma 0..1) = flat tile, no focus information


def _luma(images: torch.Tensor) -> torch.Tensor:
    """[N, H, W, 3] (or [H, W, 3]) → [N, 1, H, W]."""
    if images.dim() == 3:
        images = images[None]
    x = images.float()
    y = x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114 if x.shape[-1] >= 3 else x[..., 0]
    return y[:, None]


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-(t ** 2) / (2 * sigma ** 2))
    k = k / k.sum()
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1))
    return F.conv2d(x, k.view(1, 1, -1, 1))


def _grad_energy(x: torch.Tensor) -> torch.Tensor:
    gx = x[..., :, 1:] - x[..., :, :-1]
    gy = x[..., 1:, :] - x[..., :-1, :]
    return F.pad(gx ** 2, (0, 1)) + F.pad(gy ** 2, (0, 0, 0, 1))


def analysis_scale(height: int, width: int, long_side: int = ANALYSIS_LONG_SIDE) -> float:
    return min(1.0, long_side / max(height, width))


def blur_map(images: torch.Tensor, tile: int = 32, long_side: int = ANALYSIS_LONG_SIDE):
    """Per-tile blur estimate. images [N, H, W, 3] 0..1 → (sigma_px [N, th, tw] in *source* pixels,
    texture [N, th, tw] (gradient energy; NaN sigma where < MIN_TEXTURE), scale used)."""
    y = _luma(images)
    n, _, h, w = y.shape
    s = analysis_scale(h, w, long_side)
    if s < 1.0:
        y = F.interpolate(y, scale_factor=s, mode="area")
    tile_a = max(4, int(round(tile * s)))
    e = _grad_energy(y)
    e_re = _grad_energy(gaussian_blur(y, REBLUR_SIGMA))
    e_t = F.avg_pool2d(e, tile_a, ceil_mode=True)
    e_re_t = F.avg_pool2d(e_re, tile_a, ceil_mode=True)
    rho = (e_re_t / e_t.clamp(min=1e-12)).clamp(0.0, 0.999)
    sigma = REBLUR_SIGMA * rho / torch.sqrt(1 - rho ** 2)
    sigma = torch.where(e_t[:, 0] >= MIN_TEXTURE, sigma[:, 0], torch.full_like(sigma[:, 0], float("nan")))
    return sigma / s, e_t[:, 0], s


def sharpness_from_sigma(sigma: torch.Tensor, sharp_px: float = 1.0) -> torch.Tensor:
    """0..1 (1 = as sharp as the pixel grid allows) from blur σ in pixels; unknown tiles → 0.5."""
    out = sharp_px / torch.clamp(sigma, min=sharp_px)
    return torch.where(torch.isnan(sigma), torch.full_like(out, 0.5), out)


def focus_map(images: torch.Tensor, tile: int = 32) -> torch.Tensor:
    """Per-pixel sharpness MASK [N, H, W] (tile estimates, bilinearly upsampled)."""
    h, w = images.shape[-3], images.shape[-2]
    sigma, _, _ = blur_map(images, tile)
    sharp = sharpness_from_sigma(sigma)[:, None]
    return F.interpolate(sharp, size=(h, w), mode="bilinear", align_corners=False)[:, 0].clamp(0, 1)


def _tile_mean(values: torch.Tensor, shape: tuple, h: int, w: int) -> torch.Tensor:
    """[H, W] map → mean per tile of a blur_map grid of `shape` (same tiling by area)."""
    return F.adaptive_avg_pool2d(values.float()[None, None], shape)[0, 0]


def estimate_focus_plane(sigma: torch.Tensor, inv_depth: torch.Tensor, candidates: int = 96) -> dict:
    """Fit sigma ≈ s0 + K·|inv − inv_f| over known tiles. sigma/inv_depth [th, tw] (inv = 1/depth per tile).
    Returns {focus_inv, k, s0, rmse, tiles}; focus_inv None when the data can't say (too few tiles)."""
    known = ~torch.isnan(sigma) & torch.isfinite(inv_depth)
    s = sigma[known].double()
    v = inv_depth[known].double()
    if s.numel() < 4 or float(v.max() - v.min()) <= 1e-9:
        return {"focus_inv": None, "k": None, "s0": None, "rmse": None, "tiles": int(s.numel())}
    best = None
    grid = torch.linspace(float(v.min()), float(v.max()), candidates, dtype=torch.float64)
    for f in grid:
        a = (v - f).abs()
        A = torch.stack([torch.ones_like(a), a], dim=1)
        coef = torch.linalg.lstsq(A, s[:, None]).solution[:, 0]
        s0, k = float(coef[0]), float(coef[1])
        if k < 0 or s0 < 0:  # blur must grow away from the focal plane
            k = max(k, 0.0)
            s0 = max(float((s - k * a).mean()), 0.0)
        err = float(((s0 + k * a - s) ** 2).mean())
        if best is None or err < best[0]:
            best = (err, float(f), k, s0)
    err, f, k, s0 = best
    return {"focus_inv": f, "k": k, "s0": s0, "rmse": math.sqrt(err), "tiles": int(s.numel())}


def _region_blur(sigma: torch.Tensor, weights: torch.Tensor) -> float:
    if float(weights.max()) <= 0:
        return float("nan")
    known = ~torch.isnan(sigma) & (weights >= 0.75 * float(weights.max()))  # tiles mostly on the subject
    if int(known.sum()) == 0:
        return float("nan")
    return float(sigma[known].median())


def _runs(flags: list) -> list:
    """[(start, end)] of consecutive True entries."""
    runs, start = [], None
    for i, f in enumerate(flags + [False]):
        if f and start is None:
            start = i
        elif not f and start is not None:
            runs.append((start, i - 1))
            start = None
    return runs


def inspect_shot(frames: torch.Tensor, subject_mask: torch.Tensor | None = None,
                 inv_depth: torch.Tensor | None = None, tile: int = 32, soft_px: float = 2.0,
                 shot: str = "shot", max_frames: int = 48) -> dict:
    """Focus report for one shot (Dailies JSON). frames [T, H, W, 3]; subject_mask [T or 1, H, W] (default:
    the centre third of the frame); inv_depth [T or 1, H, W] inverse depth (bigger = nearer), optional.
    A frame warns when the subject's median blur exceeds `soft_px` source pixels."""
    t, h, w = frames.shape[:3]
    idx = torch.linspace(0, t - 1, min(t, max_frames)).round().long().unique()
    sigma, texture, _ = blur_map(frames[idx], tile)
    th, tw = sigma.shape[1:]
    if subject_mask is None:
        subject_mask = torch.zeros(1, h, w)
        subject_mask[:, h // 3: 2 * h // 3 + 1, w // 3: 2 * w // 3 + 1] = 1.0
    per_frame, soft, all_soft, focus_dirs = [], [], [], []
    for j, fi in enumerate(idx.tolist()):
        m = subject_mask[min(fi, subject_mask.shape[0] - 1)]
        mw = _tile_mean(m, (th, tw), h, w)
        subj = _region_blur(sigma[j], mw)
        known = sigma[j][~torch.isnan(sigma[j])]
        best = float(known.quantile(0.1)) if known.numel() else float("nan")
        entry = {"frame": fi, "subject_blur_px": _round(subj), "sharpest_blur_px": _round(best)}
        direction = None
        if inv_depth is not None:
            inv_t = _tile_mean(inv_depth[min(fi, inv_depth.shape[0] - 1)], (th, tw), h, w)
            plane = estimate_focus_plane(sigma[j], inv_t)
            if plane["focus_inv"] is not None:
                entry["focus_distance"] = _round(1.0 / plane["focus_inv"]) if plane["focus_inv"] > 0 else "infinity"
                subj_inv = float(inv_t[mw > 0.5].median()) if bool((mw > 0.5).any()) else float("nan")
                if math.isfinite(subj_inv):
                    direction = "back" if plane["focus_inv"] < subj_inv else "front"
        per_frame.append(entry)
        soft.append(math.isfinite(subj) and subj > soft_px)
        all_soft.append(math.isfinite(best) and best > soft_px)
        focus_dirs.append(direction)
    warnings = []
    for a, b in _runs(soft):
        frames_ab = [per_frame[i]["frame"] for i in (a, b)]
        sharper_elsewhere = any(not all_soft[i] for i in range(a, b + 1))
        dirs = {focus_dirs[i] for i in range(a, b + 1)} - {None}
        kind = "soft_subject"
        msg = f"subject soft ({_worst(per_frame, a, b)} px blur)"
        if sharper_elsewhere and dirs:
            kind = f"{dirs.pop()}_focus"
            msg += f"; focus sits {'behind' if kind == 'back_focus' else 'in front of'} the subject"
        elif sharper_elsewhere:
            msg += "; other parts of the frame are sharper (missed focus)"
        warnings.append({"type": kind, "frames": frames_ab, "message": msg})
    for a, b in _runs(all_soft):
        warnings.append({"type": "all_soft", "frames": [per_frame[a]["frame"], per_frame[b]["frame"]],
                         "message": "nothing in frame is sharp (motion blur, lens or upscaled footage?)"})
    subj_series = [p["subject_blur_px"] for p in per_frame if isinstance(p["subject_blur_px"], float)]
    if len(subj_series) >= 4:
        s = torch.tensor(subj_series)
        if float(s.std()) > 0.5 * max(float(s.median()), 0.5) and float(s.max()) > soft_px:
            warnings.append({"type": "focus_hunting", "frames": [per_frame[0]["frame"], per_frame[-1]["frame"]],
                             "message": "subject sharpness swings during the shot (focus hunting / breathing)"})
    ok_frames = sum(1 for s_ in soft if not s_)
    return {"shot": shot, "frames": t, "analysed_frames": len(idx), "image_size": [w, h], "tile": tile,
            "soft_threshold_px": soft_px, "in_focus_fraction": round(ok_frames / max(len(soft), 1), 3),
            "warnings": warnings, "per_frame": per_frame,
            "method": "re-blur gradient-energy ratio per tile (blur σ in source pixels); thin-lens fit with depth"}


def _round(v):
    return round(v, 3) if isinstance(v, float) and math.isfinite(v) else None


def _worst(per_frame, a, b):
    vals = [per_frame[i]["subject_blur_px"] for i in range(a, b + 1) if per_frame[i]["subject_blur_px"] is not None]
    return round(max(vals), 2) if vals else "?"
