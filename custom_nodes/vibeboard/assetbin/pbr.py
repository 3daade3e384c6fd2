"""PBR maps → glTF 2.0 material slots.

glTF's metallic-roughness model (spec §3.9.2): `metallicRoughnessTexture` carries **roughness in G and
metalness in B** (R unused, often occlusion); `baseColorTexture` is sRGB albedo; `normalTexture` is a
tangent-space normal map, RGB = (n·T, n·B, n·N) * 0.5 + 0.5 with B = cross(N, T) · w (w = +1 here), i.e.
green points "up" in the texture (OpenGL convention, which glTF uses).

Normals from depth are camera-space; to store them on a depth-lifted mesh we express each fine normal in
a per-pixel frame built from the *smoothed* surface (what the mesh's own vertex normals describe): N = the
smoothed normal, T = the camera's +x projected onto the tangent plane (the direction of +u), B = N × T.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def pack_metallic_roughness(metallic: torch.Tensor, roughness: torch.Tensor,
                            occlusion: torch.Tensor | None = None) -> np.ndarray:
    """[H, W] maps (0..1) → uint8 [H, W, 3] glTF texture: R occlusion (or 255), G roughness, B metallic."""
    if metallic.shape != roughness.shape:
        raise ValueError(f"metallic {tuple(metallic.shape)} and roughness {tuple(roughness.shape)} differ in size")
    r = torch.ones_like(roughness) if occlusion is None else occlusion
    rgb = torch.stack([r, roughness, metallic], dim=-1).clamp(0, 1)
    return (rgb * 255).round().to(torch.uint8).cpu().numpy()


def unpack_metallic_roughness(texture) -> tuple:
    """uint8 [H, W, 3|4] glTF texture → (metallic, roughness) float maps: B and G."""
    arr = torch.from_numpy(np.array(texture, dtype=np.float32)) / 255.0
    return arr[..., 2], arr[..., 1]


def smooth_normals(normals: torch.Tensor, radius: int = 2) -> torch.Tensor:
    """Box-blurred, renormalised normals [H, W, 3] (the mesh-level surface orientation)."""
    if radius <= 0:
        return normals
    k = 2 * radius + 1
    x = F.pad(normals.permute(2, 0, 1)[None].float(), (radius,) * 4, mode="replicate")
    x = F.avg_pool2d(x, k, stride=1)[0].permute(1, 2, 0)
    return F.normalize(x, dim=-1)


def tangent_frames(base_normals: torch.Tensor) -> tuple:
    """(T, B, N) [H, W, 3] each, camera space, from the smoothed normals (see module docstring)."""
    n = F.normalize(base_normals.float(), dim=-1)
    x = torch.tensor([1.0, 0.0, 0.0]).expand_as(n)
    t = x - (x * n).sum(-1, keepdim=True) * n
    # a surface seen exactly edge-on to +x: fall back to camera +y for the tangent
    y = torch.tensor([0.0, 1.0, 0.0]).expand_as(n)
    ty = y - (y * n).sum(-1, keepdim=True) * n
    t = torch.where(t.norm(dim=-1, keepdim=True) > 1e-4, t, ty)
    t = F.normalize(t, dim=-1)
    b = torch.linalg.cross(n, t)
    return t, b, n


def encode_normal_map(normals: torch.Tensor, base_normals: torch.Tensor) -> np.ndarray:
    """Camera-space unit normals [H, W, 3] → uint8 [H, W, 3] tangent-space normal texture."""
    t, b, n = tangent_frames(base_normals)
    local = torch.stack([(normals * t).sum(-1), (normals * b).sum(-1), (normals * n).sum(-1)], dim=-1)
    local = F.normalize(local, dim=-1)
    return ((local * 0.5 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


def decode_normal_map(texture, base_normals: torch.Tensor) -> torch.Tensor:
    """uint8 tangent-space normal texture → camera-space unit normals [H, W, 3]."""
    local = torch.from_numpy(np.array(texture, dtype=np.float32)[..., :3]) / 255.0 * 2 - 1
    local = F.normalize(local, dim=-1)
    t, b, n = tangent_frames(base_normals)
    return F.normalize(local[..., :1] * t + local[..., 1:2] * b + local[..., 2:3] * n, dim=-1)


def angular_error_deg(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    cos = (F.normalize(a, dim=-1) * F.normalize(b, dim=-1)).sum(-1).clamp(-1, 1)
    return torch.rad2deg(torch.arccos(cos))


def to_uint8(image: torch.Tensor) -> np.ndarray:
    return (image.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


def default_maps(image: torch.Tensor, roughness: float = 0.8, metallic: float = 0.0) -> dict:
    """The weights-free material: albedo = the (inpainted) photo, constant roughness / metalness. Honest
    placeholders; the Marigold or MVInverse nodes replace them with estimated maps."""
    h, w = image.shape[:2]
    return {"albedo": image[..., :3].float(), "roughness": torch.full((h, w), float(roughness)),
            "metallic": torch.full((h, w), float(metallic))}
