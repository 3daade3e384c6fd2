"""Procedural room for headless tests and the weights-free workflow: an RGB-D render with exact ground truth.

Ray-cast in PyTorch (no renderer needed): a floor at y = 0, a back wall and two side walls, and boxes resting
on the floor at known yaw, position and size. The camera stands at eye height, pitched down, looking along -Z
(glTF world: Y up, metres). Returns the image, metric depth (OpenCV z), per-pixel labels, the intrinsics, the
camera-to-world matrix and every object's true world box — what a "Deconstruct scene" run must recover.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .geometry import intrinsics_from_fov, yaw_matrix

DEFAULT_OBJECTS = (
    # name, centre (x, z), size (x, y, z), yaw (degrees), colour
    ("crate", (-0.9, -3.2), (0.6, 0.5, 0.5), 20.0, (0.70, 0.45, 0.20)),
    ("cabinet", (0.2, -4.0), (0.8, 1.0, 0.4), -10.0, (0.25, 0.45, 0.70)),
    ("stool", (1.2, -2.8), (0.35, 0.45, 0.35), 35.0, (0.60, 0.20, 0.25)),
)
FLOOR, WALL = 0, 1  # labels; objects are 2, 3, ...


@dataclass
class Room:
    image: torch.Tensor        # [H, W, 3] 0..1
    depth: torch.Tensor        # [H, W] metres (OpenCV z)
    labels: torch.Tensor       # [H, W] int64: 0 floor, 1 wall, 2+ objects in `objects` order
    intrinsics: tuple          # fx, fy, cx, cy
    cam_to_world: torch.Tensor  # [4, 4] OpenCV camera → glTF world
    objects: list = field(default_factory=list)  # dicts: name, centre, size, yaw_deg, colour

    def true_boxes(self) -> dict:
        """name → (min xyz, max xyz) world axis-aligned box of each object."""
        out = {}
        for o in self.objects:
            sx, sy, sz = o["size"]
            corners = torch.tensor([[x, y, z] for x in (-sx / 2, sx / 2) for y in (0.0, sy)
                                    for z in (-sz / 2, sz / 2)], dtype=torch.float64)
            world = corners @ yaw_matrix(math.radians(o["yaw_deg"])).T + torch.tensor(
                [o["centre"][0], 0.0, o["centre"][1]], dtype=torch.float64)
            out[o["name"]] = (world.amin(0), world.amax(0))
        return out


def camera_matrix(height_m: float, pitch_deg: float) -> torch.Tensor:
    """OpenCV camera → world for a camera at (0, height, 0) looking along -Z, pitched down."""
    t = math.radians(pitch_deg)
    x = torch.tensor([1.0, 0.0, 0.0])
    z = torch.tensor([0.0, -math.sin(t), -math.cos(t)])
    y = torch.linalg.cross(z, x)
    m = torch.eye(4, dtype=torch.float64)
    m[:3, :3] = torch.stack([x, y, z], dim=1).double()
    m[1, 3] = height_m
    return m


def _ray_box(origin, dirs, centre, size, yaw):
    """Distance along each ray to an oriented box (inf where missed)."""
    rot = yaw_matrix(yaw)
    o = (origin - centre) @ rot           # into the box frame (rot is orthonormal: inverse = transpose)
    d = dirs @ rot
    half = torch.tensor(size, dtype=torch.float64) / 2
    lo = torch.tensor([-half[0], -half[1], -half[2]], dtype=torch.float64)
    hi = -lo
    inv = 1.0 / torch.where(d.abs() < 1e-12, torch.full_like(d, 1e-12), d)
    t0, t1 = (lo - o) * inv, (hi - o) * inv
    tmin = torch.minimum(t0, t1).amax(-1)
    tmax = torch.maximum(t0, t1).amin(-1)
    hit = (tmax >= tmin) & (tmax > 0)
    return torch.where(hit, tmin.clamp_min(0), torch.full_like(tmin, math.inf))


def make_room(width: int = 256, height: int = 192, fov_deg: float = 70.0, objects=DEFAULT_OBJECTS,
              camera_height: float = 2.4, pitch_deg: float = 40.0, room=(4.0, 6.0), seed: int = 0) -> Room:
    """Render the room; `room` = (width, depth) in metres (walls at x = ±w/2 and z = -depth)."""
    gen = torch.Generator().manual_seed(int(seed))
    k = intrinsics_from_fov(width, height, fov_deg)
    c2w = camera_matrix(camera_height, pitch_deg)
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64),
                            indexing="ij")
    d_cam = torch.stack([(xs - k[2]) / k[0], (ys - k[3]) / k[1], torch.ones_like(xs)], -1)  # z = 1: t is depth
    dirs = d_cam @ c2w[:3, :3].T
    origin = c2w[:3, 3]
    inf = torch.full((height, width), math.inf, dtype=torch.float64)
    best, label = inf.clone(), torch.full((height, width), -1, dtype=torch.int64)

    def take(t, lab):
        closer = t < best
        best[closer] = t[closer]
        label[closer] = lab

    t_floor = torch.where(dirs[..., 1] < -1e-9, -origin[1] / dirs[..., 1], inf)
    take(t_floor, FLOOR)
    half_w, depth_m = room
    for axis, plane in ((2, -depth_m), (0, -half_w / 2), (0, half_w / 2)):
        t = (plane - origin[axis]) / torch.where(dirs[..., axis].abs() < 1e-12, torch.full_like(t_floor, 1e-12),
                                                 dirs[..., axis])
        take(torch.where(t > 0, t, inf), WALL)
    placed = []
    for i, (name, (cx, cz), size, yaw_deg, colour) in enumerate(objects):
        centre = torch.tensor([cx, size[1] / 2, cz], dtype=torch.float64)
        take(_ray_box(origin, dirs, centre, size, math.radians(yaw_deg)), 2 + i)
        placed.append({"name": name, "centre": (cx, cz), "size": tuple(size), "yaw_deg": yaw_deg, "colour": colour})
    if torch.isinf(best).any():
        raise ValueError("sample room: some rays hit nothing (camera outside the room?)")
    hit = origin + dirs * best[..., None]
    image = torch.empty(height, width, 3, dtype=torch.float64)
    checker = ((torch.floor(hit[..., 0] * 2) + torch.floor(hit[..., 2] * 2)) % 2)[..., None]
    image[:] = 0.55 + 0.25 * checker                          # floor: grey checker (half-metre tiles)
    image[label == WALL] = torch.tensor([0.85, 0.82, 0.75], dtype=torch.float64)
    for i, o in enumerate(placed):
        sel = label == 2 + i
        stripe = 0.85 + 0.15 * torch.cos(hit[sel][:, 1] * 25)[:, None]  # texture so albedo maps vary
        image[sel] = torch.tensor(o["colour"], dtype=torch.float64) * stripe
    image = (image + 0.01 * torch.randn(image.shape, generator=gen, dtype=torch.float64)).clamp(0, 1)
    return Room(image.float(), best.float(), label, k, c2w, placed)
