"""Infinite (rotation-only) homography and inverse-mapped warps of images, latents and DiT tokens.

Convention (derived from vibeboard.camera): a target camera with camera-to-world rotation R (relative to
the source camera, OpenCV axes x right / y down / z forward) sees a direction d (source camera coords) at
pixel  p_trg ~ K_trg · Rᵀ · d.  The source camera sees it at p_src ~ K_src · d.  For points at infinity
(or a purely rotating camera) therefore

    p_trg ~ H · p_src,    H = K_trg · Rᵀ · K_src⁻¹            (InfCam's formula, same R convention)

and a warp is done by inverse mapping: every target pixel samples the source at H⁻¹ · p_trg
(perspective divide; samples that land behind the source camera are marked invalid).

Pixel coordinates: pixel centres at integers, (0, 0) = centre of the top-left pixel. `scale_intrinsics`
maps K between resolutions with that convention (c' = (c + 0.5)·s − 0.5), e.g. from 832×480 pixels to
Wan's 52×30 token grid (VAE stride 8 × patch 2 = 16).

`convention="infcam"` reproduces InfCam's released code instead (K on the grid = (fx/W·w, fy/W·w, w/2, h/2),
grid normalised with x/(w−1) but sampled with align_corners=False) — use it when driving InfCam's
checkpoint so the network sees what it was trained on; "exact" is geometrically correct.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

TOKEN_STRIDE_WAN = 16  # Wan2.1: VAE 8× spatial, DiT patch 2×2


def _as_tensor(x, dtype=torch.float64) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.to(dtype)
    return torch.as_tensor(np.asarray(x), dtype=dtype)


def scale_intrinsics(K, src_size: tuple, dst_size: tuple) -> torch.Tensor:
    """K ([..., 3, 3], pixels of src_size=(W, H)) expressed in pixels of dst_size=(w, h)."""
    K = _as_tensor(K).clone()
    sx = dst_size[0] / src_size[0]
    sy = dst_size[1] / src_size[1]
    K[..., 0, 0] *= sx
    K[..., 1, 1] *= sy
    K[..., 0, 1] *= sx
    K[..., 0, 2] = (K[..., 0, 2] + 0.5) * sx - 0.5
    K[..., 1, 2] = (K[..., 1, 2] + 0.5) * sy - 0.5
    return K


def infinite_homography(K_src, K_trg, R) -> torch.Tensor:
    """H = K_trg · Rᵀ · K_src⁻¹ (maps source pixels to target pixels). Shapes broadcast over [..., 3, 3]."""
    K_src, K_trg, R = _as_tensor(K_src), _as_tensor(K_trg), _as_tensor(R)
    return K_trg @ R.transpose(-1, -2) @ torch.linalg.inv(K_src)


def infcam_grid_intrinsics(intrinsic_px, image_width: float, grid_w: int, grid_h: int) -> torch.Tensor:
    """InfCam's token-grid K: focal normalised by the image width then × grid width, centre (w/2, h/2)."""
    k = _as_tensor(intrinsic_px)
    out = torch.zeros(k.shape[:-1] + (3, 3), dtype=torch.float64)
    out[..., 0, 0] = k[..., 0] / image_width * grid_w
    out[..., 1, 1] = k[..., 1] / image_width * grid_w
    out[..., 0, 2] = grid_w / 2
    out[..., 1, 2] = grid_h / 2
    out[..., 2, 2] = 1.0
    return out


def sampling_grid(H, height: int, width: int, convention: str = "exact"):
    """For target pixels of an h×w image, the source pixel coordinates H⁻¹·p (float64) and the
    grid_sample grid. Returns (src_xy [N, h, w, 2], grid [N, h, w, 2], valid [N, h, w])."""
    H = _as_tensor(H).reshape(-1, 3, 3)
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64),
                            indexing="ij")
    pts = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1).reshape(-1, 3)  # h*w, 3
    src = torch.einsum("nij,pj->npi", torch.linalg.inv(H), pts)
    w_prime = src[..., 2:3]
    valid = (w_prime[..., 0] > 1e-9).reshape(-1, height, width)
    src_xy = (src[..., :2] / w_prime.clamp(min=1e-9)).reshape(-1, height, width, 2)
    if convention == "infcam":
        gx = src_xy[..., 0] / (width - 1) * 2 - 1
        gy = src_xy[..., 1] / (height - 1) * 2 - 1
    else:  # exact: integer pixel centres ↔ align_corners=True
        gx = src_xy[..., 0] / max(width - 1, 1) * 2 - 1
        gy = src_xy[..., 1] / max(height - 1, 1) * 2 - 1
    inside = (src_xy[..., 0] >= -0.5) & (src_xy[..., 0] <= width - 0.5) & \
             (src_xy[..., 1] >= -0.5) & (src_xy[..., 1] <= height - 0.5)
    return src_xy, torch.stack([gx, gy], dim=-1), valid & inside


def warp_homography(x: torch.Tensor, H, mode: str = "bilinear", padding_mode: str = "border",
                    convention: str = "exact", return_valid: bool = False):
    """Warp x [N, C, h, w] by homographies H ([N, 3, 3] or [3, 3], source→target pixel maps in x's own
    pixel grid) with inverse mapping. Identity homographies return the input unchanged (exact no-op)."""
    n, _, h, w = x.shape
    Hs = _as_tensor(H).reshape(-1, 3, 3)
    if Hs.shape[0] == 1 and n > 1:
        Hs = Hs.expand(n, 3, 3)
    if Hs.shape[0] != n:
        raise ValueError(f"warp_homography: {Hs.shape[0]} homographies for {n} images")
    src_xy, grid, valid = sampling_grid(Hs, h, w, convention)
    out = F.grid_sample(x, grid.to(x.dtype if x.is_floating_point() else torch.float32).to(x.device),
                        mode=mode, padding_mode=padding_mode, align_corners=(convention != "infcam"))
    eye = torch.eye(3, dtype=torch.float64)
    same = torch.tensor([torch.allclose(Hh / Hh[2, 2], eye, atol=1e-12, rtol=0) for Hh in Hs])
    if bool(same.any()):
        out = out.clone()
        out[same.to(out.device)] = x[same.to(x.device)]
        valid[same] = True
    return (out, valid.to(x.device)) if return_valid else out


def warp_tokens(tokens: torch.Tensor, H, **kwargs) -> torch.Tensor:
    """tokens [B, F, h, w, D] (DiT tokens on the latent/patch grid), H [B, F, 3, 3] on that grid."""
    b, f, h, w, d = tokens.shape
    x = tokens.permute(0, 1, 4, 2, 3).reshape(b * f, d, h, w)
    y = warp_homography(x, _as_tensor(H).reshape(b * f, 3, 3), **kwargs)
    return y.reshape(b, f, d, h, w).permute(0, 1, 3, 4, 2)


def warp_latents(latents: torch.Tensor, H, **kwargs) -> torch.Tensor:
    """latents [B, C, F, h, w] (video latents), H [B, F, 3, 3] on the latent grid."""
    b, c, f, h, w = latents.shape
    x = latents.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
    y = warp_homography(x, _as_tensor(H).reshape(b * f, 3, 3), **kwargs)
    return y.reshape(b, f, c, h, w).permute(0, 2, 1, 3, 4)


def path_homographies(path, grid_size: tuple | None = None, frames=None, K_src=None) -> torch.Tensor:
    """Per-frame H for a VB_CAMERA_PATH: source = the path's frame 0 camera (or K_src), target = frame t.
    grid_size=(w, h) rescales both K to that grid (e.g. the token grid). Returns [T, 3, 3] float64."""
    rel = path.relative_to_first()
    idx = list(range(len(rel))) if frames is None else list(frames)
    K = torch.as_tensor(rel.K()[idx])
    Ks = torch.as_tensor(rel.K()[0]) if K_src is None else _as_tensor(K_src)
    if grid_size is not None:
        K = scale_intrinsics(K, (rel.width, rel.height), grid_size)
        Ks = scale_intrinsics(Ks, (rel.width, rel.height), grid_size)
    R = torch.as_tensor(rel.c2w[idx, :3, :3])
    return infinite_homography(Ks.expand_as(K), K, R)


def rotation_preview(frames: torch.Tensor, path, source: str = "first_frame", padding_mode: str = "zeros"):
    """Training-free preview of what a rotation-conditioned model (InfCam) sees: frames [T, H, W, C] (ComfyUI
    IMAGE) warped along `path` (resampled to T frames). source="first_frame" warps frame 0 to every target
    camera (InfCam's conditioning); "per_frame" warps frame t by camera t (only right for a locked-off source).
    Returns (images [T, H, W, C], valid mask [T, H, W])."""
    t, h, w, c = frames.shape
    if len(path) != t:
        path = path.resample(t)
    path = path.scaled_to(w, h)
    Hs = path_homographies(path)
    src = frames[:1].expand(t, h, w, c) if source == "first_frame" else frames
    x = src.permute(0, 3, 1, 2).float()
    out, valid = warp_homography(x, Hs, padding_mode=padding_mode, return_valid=True)
    return out.permute(0, 2, 3, 1).clamp(0, 1).to(frames.dtype), valid.float()
