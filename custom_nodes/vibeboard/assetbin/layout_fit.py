"""4-DoF ground-plane layout fit (3D-RE-GEN's scene assembly, in plain PyTorch instead of PyTorch3D).

An object mesh made in its own frame (by an image-to-3D model, or a canonical depth-lifted mesh) is placed in
the scene by yaw about +Y, translation on the floor (x, z) and a uniform scale; its height is not free — the
lowest point rests on the floor (y = 0), the ground-plane constraint. The fit minimises the symmetric Chamfer
distance between the posed mesh samples and the object's observed points (from depth), from several yaw
starts (Chamfer is not convex in yaw), Adam first and L-BFGS to polish.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..common import grad


@dataclass
class Pose4:
    yaw: float          # radians about +Y
    x: float
    z: float
    scale: float
    y: float = 0.0      # set by the ground constraint
    loss: float = float("nan")

    def matrix(self) -> torch.Tensor:
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        m = torch.eye(4, dtype=torch.float64)
        m[:3, :3] = torch.tensor([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=torch.float64) * self.scale
        m[:3, 3] = torch.tensor([self.x, self.y, self.z], dtype=torch.float64)
        return m


def _pose_points(src: torch.Tensor, yaw, x, z, log_s, floor_y: float) -> torch.Tensor:
    c, s = torch.cos(yaw), torch.sin(yaw)
    scale = torch.exp(log_s)
    px = (c * src[:, 0] + s * src[:, 2]) * scale + x
    pz = (-s * src[:, 0] + c * src[:, 2]) * scale + z
    py = src[:, 1] * scale
    py = py - py.min() + floor_y          # ground-plane constraint: the lowest point touches the floor
    return torch.stack([px, py, pz], dim=-1)


def chamfer(a: torch.Tensor, b: torch.Tensor, source_weight: float = 1.0) -> torch.Tensor:
    """Chamfer between posed source `a` and target `b`. With an observation that shows only part of the object
    (one photo), `source_weight` < 1 trusts the target→source term (every seen point lies on the mesh) more than
    source→target (the hidden back of the mesh has no observed points near it)."""
    d = torch.cdist(a, b)
    return source_weight * d.min(1).values.pow(2).mean() + d.min(0).values.pow(2).mean()


def _subsample(points: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    if len(points) <= n:
        return points
    return points[torch.randperm(len(points), generator=gen)[:n]]


def _adam(params, src, tgt, floor_y, steps, sw, lr=0.02):
    opt = torch.optim.Adam(params, lr=lr)
    for _ in range(int(steps)):
        opt.zero_grad()
        chamfer(_pose_points(src, *params, floor_y), tgt, sw).backward()
        opt.step()


def fit_4dof(*args, **kwargs) -> "Pose4":
    """Pose that puts `source` points [N, 3] (object frame, Y up) onto `target` points [M, 3] (world); see
    `_fit_4dof` for the options. Runs single-threaded: hundreds of tiny steps spend far more time waking
    intra-op threads than computing (measured 19 s of CPU with 2 threads vs 1.2 s with one). The fit is
    gradient descent: it opts out of the caller's inference mode (nodes run under it, as in ComfyUI), and
    points that came from another node (inference tensors) are copied before autograd sees them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with grad.training_mode():
            return _fit_4dof(*[grad.normal_tensor(a) for a in args],
                             **{k: grad.normal_tensor(v) for k, v in kwargs.items()})
    finally:
        torch.set_num_threads(threads)


def _fit_4dof(source: torch.Tensor, target: torch.Tensor, floor_y: float = 0.0, yaw_starts: int = 8,
              coarse_steps: int = 40, adam_steps: int = 60, lbfgs_steps: int = 40, max_points: int = 500,
              seed: int = 0, source_weight: float = 1.0) -> Pose4:
    """Chamfer fit from `yaw_starts` starts (coarse Adam on a subsample), then Adam and L-BFGS on the best."""
    if source.ndim != 2 or source.shape[1] != 3 or len(source) < 4:
        raise ValueError("layout fit: source must be [N>=4, 3] points")
    if target.ndim != 2 or target.shape[1] != 3 or len(target) < 4:
        raise ValueError("layout fit: target must be [M>=4, 3] points")
    gen = torch.Generator().manual_seed(int(seed))
    src = _subsample(source.double(), max_points, gen)
    tgt = _subsample(target.double(), max_points, gen)
    # scale from the spread of the points, translation from the centroids: good starts, the fit refines them
    src_coarse, tgt_coarse = _subsample(src, 200, gen), _subsample(tgt, 200, gen)
    src_spread = (src - src.mean(0)).norm(dim=-1).mean()
    tgt_spread = (tgt - tgt.mean(0)).norm(dim=-1).mean()
    log_s0 = math.log(max(float(tgt_spread / src_spread.clamp_min(1e-9)), 1e-6))
    best = None
    for k in range(int(yaw_starts)):  # short coarse runs from every start; only the best one is refined
        yaw0 = 2 * math.pi * k / yaw_starts
        params = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (yaw0, 0.0, 0.0, log_s0)]
        with torch.no_grad():  # centre the posed source on the target centroid
            posed = _pose_points(src, *params, floor_y)
            params[1] += float(tgt[:, 0].mean() - posed[:, 0].mean())
            params[2] += float(tgt[:, 2].mean() - posed[:, 2].mean())
        _adam(params, src_coarse, tgt_coarse, floor_y, coarse_steps, source_weight)
        with torch.no_grad():
            loss = float(chamfer(_pose_points(src_coarse, *params, floor_y), tgt_coarse, source_weight))
        if best is None or loss < best[0]:
            best = (loss, [p.detach().clone() for p in params])
    params = [p.requires_grad_(True) for p in best[1]]
    _adam(params, src, tgt, floor_y, adam_steps, source_weight)
    params = [p.requires_grad_(True) for p in best[1]]
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=int(lbfgs_steps), line_search_fn="strong_wolfe",
                            tolerance_grad=1e-12, tolerance_change=1e-15)

    def closure():
        opt.zero_grad()
        value = chamfer(_pose_points(src, *params, floor_y), tgt, source_weight)
        value.backward()
        return value

    if lbfgs_steps > 0:
        opt.step(closure)
    yaw, x, z, log_s = (float(p.detach()) for p in params)
    scale = math.exp(log_s)
    y = floor_y - float(source[:, 1].double().min()) * scale
    with torch.no_grad():
        loss = float(chamfer(_pose_points(src, *params, floor_y), tgt, source_weight))
    yaw = (yaw + math.pi) % (2 * math.pi) - math.pi
    return Pose4(yaw=yaw, x=x, z=z, scale=scale, y=y, loss=loss)


def apply_pose(points: torch.Tensor, pose: Pose4) -> torch.Tensor:
    m = pose.matrix()
    return points.double() @ m[:3, :3].T + m[:3, 3]
