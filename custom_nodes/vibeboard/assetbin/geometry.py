"""Depth geometry: intrinsics, point clouds, ground plane, normals from depth, depth-lifted meshes.

Conventions (the same as camera/path.py): cameras are OpenCV (x right, y down, z forward), intrinsics are
(fx, fy, cx, cy) in pixels, depth is metric z (metres, bigger = farther). The scene ("world") frame is glTF's:
Y up, metres, the floor at y = 0, the camera looking roughly along -Z.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def intrinsics_from_fov(width: int, height: int, fov_deg: float) -> tuple:
    """Square pixels, principal point at the centre, horizontal field of view `fov_deg`."""
    if not 1.0 <= fov_deg <= 179.0:
        raise ValueError(f"horizontal field of view must be 1..179 degrees; got {fov_deg}")
    fx = (width / 2.0) / math.tan(math.radians(fov_deg) / 2.0)
    return fx, fx, (width - 1) / 2.0, (height - 1) / 2.0


def unproject(depth: torch.Tensor, intrinsics) -> torch.Tensor:
    """depth [H, W] → camera-space points [H, W, 3] (OpenCV)."""
    fx, fy, cx, cy = (float(v) for v in intrinsics)
    h, w = depth.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                            indexing="ij")
    z = depth.double()
    return torch.stack([(xs - cx) / fx * z, (ys - cy) / fy * z, z], dim=-1)


def project(points: torch.Tensor, intrinsics) -> torch.Tensor:
    """camera-space points [..., 3] → pixel coordinates [..., 2]."""
    fx, fy, cx, cy = (float(v) for v in intrinsics)
    z = points[..., 2].clamp_min(1e-9)
    return torch.stack([points[..., 0] / z * fx + cx, points[..., 1] / z * fy + cy], dim=-1)


def fit_plane_ransac(points: torch.Tensor, iterations: int = 200, threshold: float = 0.02, seed: int = 0,
                     normal_hint=None, max_angle_deg: float = 30.0):
    """Largest plane among points [N, 3] (RANSAC + least-squares refit). Returns (normal, offset, inliers)
    with normal·p + offset = 0. `normal_hint` keeps only planes within `max_angle_deg` of that direction
    (the floor: roughly the camera's up, -y in OpenCV)."""
    pts = points.double()
    n = pts.shape[0]
    if n < 3:
        raise ValueError("need at least 3 points to fit a plane")
    gen = torch.Generator().manual_seed(int(seed))
    hint = None if normal_hint is None else F.normalize(torch.as_tensor(normal_hint, dtype=torch.float64), dim=0)
    cos_max = math.cos(math.radians(max_angle_deg))
    best, best_count = None, -1
    for _ in range(int(iterations)):
        a, b, c = pts[torch.randint(n, (3,), generator=gen)]
        normal = torch.linalg.cross(b - a, c - a)
        norm = normal.norm()
        if norm < 1e-12:
            continue
        normal = normal / norm
        if hint is not None:
            if normal @ hint < 0:
                normal = -normal
            if normal @ hint < cos_max:
                continue
        inliers = (pts @ normal - normal @ a).abs() < threshold
        count = int(inliers.sum())
        if count > best_count:
            best, best_count = inliers, count
    if best is None:
        raise ValueError("no plane found (all samples degenerate or none close to the hinted direction)")
    sel = pts[best]
    centre = sel.mean(0)
    _, _, vh = torch.linalg.svd(sel - centre, full_matrices=False)
    normal = vh[-1]
    if hint is not None and normal @ hint < 0:
        normal = -normal
    offset = -normal @ centre
    inliers = (pts @ normal + offset).abs() < threshold
    return normal, float(offset), inliers


def world_from_camera(floor_normal: torch.Tensor, floor_offset: float) -> torch.Tensor:
    """4×4 camera→world transform putting the floor at y = 0 with +Y up and the camera's forward axis
    (projected on the floor) along -Z; the camera sits above the origin."""
    up = F.normalize(floor_normal.double(), dim=0)          # floor normal in camera coords (pointing up)
    fwd = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    fwd = F.normalize(fwd - (fwd @ up) * up, dim=0)         # camera forward on the floor
    right = torch.linalg.cross(fwd, up)                     # world +X = forward × up (right-handed, Y up)
    rot = torch.stack([right, up, -fwd])                    # rows: world axes in camera coords
    out = torch.eye(4, dtype=torch.float64)
    out[:3, :3] = rot
    out[1, 3] = floor_offset                                # camera height above the floor
    return out


def transform_points(matrix: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    return points.double() @ matrix[:3, :3].T.double() + matrix[:3, 3].double()


def normals_from_depth(depth: torch.Tensor, intrinsics) -> torch.Tensor:
    """Camera-space unit normals [H, W, 3] from a metric depth map (central differences of the unprojected
    points; border pixels use one-sided differences). Normals face the camera (negative z component)."""
    pts = unproject(depth, intrinsics)
    pad = F.pad(pts.permute(2, 0, 1)[None], (1, 1, 1, 1), mode="replicate")[0].permute(1, 2, 0)
    dx = pad[1:-1, 2:] - pad[1:-1, :-2]
    dy = pad[2:, 1:-1] - pad[:-2, 1:-1]
    n = torch.linalg.cross(dx, dy)
    n = F.normalize(n, dim=-1)
    flip = (n[..., 2] > 0).unsqueeze(-1)
    return torch.where(flip, -n, n).float()


def lifted_mesh(points: torch.Tensor, mask: torch.Tensor, stride: int = 1, max_edge_ratio: float = 0.1,
                floor_y: float | None = None):
    """Depth-lifted mesh of one object: the masked pixel grid of `points` [H, W, 3] (world coords)
    triangulated, triangles across depth jumps dropped, and — with `floor_y` — the open boundary extruded
    straight down to the floor so the asset is a closed-bottom solid. Returns (vertices [V, 3],
    faces [F, 3] int64, uv [V, 2] in the image's 0..1 coords, v down)."""
    h, w = mask.shape
    ys = torch.arange(0, h, stride)
    xs = torch.arange(0, w, stride)
    grid_pts = points[ys][:, xs].double()
    grid_mask = mask[ys][:, xs].bool()
    gh, gw = grid_mask.shape
    index = torch.full((gh, gw), -1, dtype=torch.int64)
    index[grid_mask] = torch.arange(int(grid_mask.sum()))
    verts = grid_pts[grid_mask]
    yy, xx = torch.meshgrid(ys.double(), xs.double(), indexing="ij")
    uv = torch.stack([(xx[grid_mask] + 0.5) / w, (yy[grid_mask] + 0.5) / h], dim=-1)
    a, b = index[:-1, :-1], index[:-1, 1:]
    c, d = index[1:, :-1], index[1:, 1:]
    tris = torch.cat([torch.stack([a, c, b], -1).reshape(-1, 3), torch.stack([b, c, d], -1).reshape(-1, 3)])
    tris = tris[(tris >= 0).all(1)]
    if len(tris) == 0:
        raise ValueError("object mask too small to mesh")
    # drop triangles spanning a depth discontinuity (edge longer than ratio × distance to the camera origin)
    tv = verts[tris]
    edges = torch.stack([(tv[:, 0] - tv[:, 1]).norm(dim=-1), (tv[:, 1] - tv[:, 2]).norm(dim=-1),
                         (tv[:, 2] - tv[:, 0]).norm(dim=-1)], -1).amax(-1)
    scale = tv.norm(dim=-1).amax(-1).clamp_min(1e-6) * max_edge_ratio * stride
    tris = tris[edges < scale]
    if floor_y is not None:
        verts, tris, uv = _extrude_to_floor(verts, tris, uv, floor_y)
    return verts.float(), tris, uv.float()


def _extrude_to_floor(verts, tris, uv, floor_y: float):
    """Walls from each open boundary edge down to the floor plus a bottom cap (fan from the centroid)."""
    edges = torch.cat([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
    key = torch.sort(edges, dim=1).values
    uniq, inverse, counts = torch.unique(key, dim=0, return_inverse=True, return_counts=True)
    boundary = edges[counts[inverse] == 1]          # directed as in their triangle
    if len(boundary) == 0:
        return verts, tris, uv
    used = torch.unique(boundary)
    base = torch.full((len(verts),), -1, dtype=torch.int64)
    base[used] = torch.arange(len(used)) + len(verts)
    low = verts[used].clone()
    low[:, 1] = floor_y
    centre = low.mean(0, keepdim=True)
    centre_idx = len(verts) + len(used)
    new_verts = torch.cat([verts, low, centre])
    new_uv = torch.cat([uv, uv[used], uv[used].mean(0, keepdim=True)])
    i, j = boundary[:, 0], boundary[:, 1]
    # the boundary edge (i, j) runs one way in its triangle; the wall quad (j, i, i', j') faces outwards
    walls = torch.cat([torch.stack([j, i, base[i]], -1), torch.stack([j, base[i], base[j]], -1)])
    cap = torch.stack([base[j], base[i], torch.full_like(i, centre_idx)], -1)
    return new_verts, torch.cat([tris, walls, cap]), new_uv


def footprint_pose(points: torch.Tensor) -> tuple:
    """Yaw (radians, about +Y) and centre (x, z) of the minimum-area rectangle around points [N, 3] projected
    on the floor (rotating calipers over the convex hull: the optimal box shares an edge with it)."""
    xz = points[:, [0, 2]].double().numpy()
    hull = _convex_hull(xz)
    best = None
    for k in range(len(hull)):
        e = hull[(k + 1) % len(hull)] - hull[k]
        if np.hypot(*e) < 1e-12:
            continue
        ang = math.atan2(e[1], e[0])
        c, s = math.cos(ang), math.sin(ang)
        rot = np.array([[c, s], [-s, c]])
        local = hull @ rot.T
        lo, hi = local.min(0), local.max(0)
        area = float(np.prod(hi - lo))
        if best is None or area < best[0] - 1e-12:
            centre = ((lo + hi) / 2) @ rot
            best = (area, ang, centre, hi - lo)
    if best is None:
        return 0.0, (float(xz[:, 0].mean()), float(xz[:, 1].mean())), (0.0, 0.0)
    _, ang, centre, size = best
    # yaw about +Y maps local +X to (cos, 0, -sin) in (x, z): our edge angle is measured in the x-z plane
    return -ang, (float(centre[0]), float(centre[1])), (float(size[0]), float(size[1]))


def _convex_hull(p: np.ndarray) -> np.ndarray:
    pts = np.unique(p, axis=0)
    if len(pts) < 3:
        return pts
    pts = pts[np.lexsort((pts[:, 1], pts[:, 0]))]

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower, upper = [], []
    for q in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], q) <= 0:
            lower.pop()
        lower.append(q)
    for q in pts[::-1]:
        while len(upper) >= 2 and cross(upper[-2], upper[-1], q) <= 0:
            upper.pop()
        upper.append(q)
    return np.array(lower[:-1] + upper[:-1])


def yaw_matrix(yaw: float) -> torch.Tensor:
    """Rotation about +Y (right-handed, Y up)."""
    c, s = math.cos(yaw), math.sin(yaw)
    return torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]], dtype=torch.float64)
