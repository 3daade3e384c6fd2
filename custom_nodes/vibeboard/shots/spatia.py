"""Spatia-style location memory (arXiv 2512.15716; Wan2.2-TI2V-5B + VACE-style control): a set's point cloud.

Mechanism (training-free parts of Spatia `inference.py`, `utils/render_point.py`):
- the set is remembered as a coloured point cloud, built from depth + camera per generated frame (Spatia uses
  MapAnything for depth/poses; here depth comes from any depth node) and saved as `point_cloud.ply`;
- for a new shot, the cloud is rendered along the new camera path (z-buffered point splatting) into a control
  video + visibility mask; with Wan VACE the rendered pixels are kept (mask 0) and the unseen ones generated
  (mask 1);
- reference frames are chosen from the stored frames by camera-frustum overlap with the new path (fraction of
  cloud points both cameras see), best first.

Cameras follow the shared camera module (`vibeboard.camera.CameraPath`): OpenCV camera-to-world 4x4, x right,
y down, z forward; intrinsics (fx, fy, cx, cy) in pixels, pixel centres at integer coordinates.
Any object with `.c2w [T,4,4]`, `.intrinsics [T,4]`, `.width`, `.height` works (duck-typed).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from ..common.paths import PathEscapeError, resolve_inside


@dataclass
class Cameras:
    """Minimal camera list (same convention as vibeboard.camera.CameraPath)."""
    c2w: np.ndarray          # [T, 4, 4]
    intrinsics: np.ndarray   # [T, 4]
    width: int
    height: int

    def __len__(self):
        return len(self.c2w)


def as_cameras(cams) -> Cameras:
    c2w = np.asarray(cams.c2w, dtype=np.float64).reshape(-1, 4, 4)
    k = np.asarray(cams.intrinsics, dtype=np.float64)
    if k.ndim == 1:
        k = np.repeat(k[None], len(c2w), axis=0)
    return Cameras(c2w, k.reshape(-1, 4), int(cams.width), int(cams.height))


def camera_at(cams, i: int) -> Cameras:
    c = as_cameras(cams)
    return Cameras(c.c2w[i:i + 1], c.intrinsics[i:i + 1], c.width, c.height)


@dataclass
class PointCloud:
    xyz: np.ndarray                      # [N, 3] float32 world coordinates
    rgb: np.ndarray                      # [N, 3] uint8

    def __len__(self):
        return len(self.xyz)

    @staticmethod
    def empty() -> "PointCloud":
        return PointCloud(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8))

    def merged(self, other: "PointCloud", voxel: float = 0.0) -> "PointCloud":
        pc = PointCloud(np.concatenate([self.xyz, other.xyz]), np.concatenate([self.rgb, other.rgb]))
        return pc.voxel_downsampled(voxel) if voxel > 0 else pc

    def voxel_downsampled(self, voxel: float) -> "PointCloud":
        """Keep the first point per voxel (older memory wins, so the set does not drift)."""
        if len(self) == 0:
            return self
        keys = np.floor(self.xyz / voxel).astype(np.int64)
        _, first = np.unique(keys, axis=0, return_index=True)
        first.sort()
        return PointCloud(self.xyz[first], self.rgb[first])


# ---- depth <-> points --------------------------------------------------------------------------------------

def unproject(depth: torch.Tensor, image: torch.Tensor, cams, index: int = 0, valid: Optional[torch.Tensor] = None,
              stride: int = 1) -> PointCloud:
    """Depth [H, W] (z along the optical axis) + IMAGE [H, W, 3] 0..1 seen by camera `index` -> world points."""
    c = as_cameras(cams)
    fx, fy, cx, cy = c.intrinsics[index]
    H, W = depth.shape
    d = depth.detach().cpu().double().numpy()[::stride, ::stride]
    v, u = np.mgrid[0:H:stride, 0:W:stride].astype(np.float64)
    ok = np.isfinite(d) & (d > 0)
    if valid is not None:
        ok &= valid.detach().cpu().numpy()[::stride, ::stride] > 0.5
    z = d[ok]
    x = (u[ok] - cx) / fx * z
    y = (v[ok] - cy) / fy * z
    cam_pts = np.stack([x, y, z, np.ones_like(z)], axis=1)
    world = (c.c2w[index] @ cam_pts.T).T[:, :3]
    col = (image.detach().cpu().float().numpy()[::stride, ::stride][ok] * 255).round().clip(0, 255).astype(np.uint8)
    return PointCloud(world.astype(np.float32), col)


def project(xyz: np.ndarray, cams, index: int = 0):
    """World points -> (u, v, z) in camera `index` (pixel coordinates, depth along the optical axis)."""
    c = as_cameras(cams)
    w2c = np.linalg.inv(c.c2w[index])
    p = xyz.astype(np.float64) @ w2c[:3, :3].T + w2c[:3, 3]
    fx, fy, cx, cy = c.intrinsics[index]
    z = p[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = fx * p[:, 0] / z + cx
        v = fy * p[:, 1] / z + cy
    return u, v, z


def render(cloud: PointCloud, cams, index: int = 0, point_radius: int = 0, near: float = 1e-4):
    """Z-buffered splatting. Returns (IMAGE [H, W, 3] 0..1, visibility MASK [H, W], depth [H, W] (0 = empty)).

    Each point covers its nearest pixel (and the (2r+1)^2 square around it when point_radius = r); per pixel the
    nearest point wins.
    """
    c = as_cameras(cams)
    H, W = c.height, c.width
    img = torch.zeros(H * W, 3)
    depth = torch.full((H * W,), float("inf"), dtype=torch.float64)
    if len(cloud) == 0:
        return img.view(H, W, 3), torch.zeros(H, W), torch.zeros(H, W)
    u, v, z = project(cloud.xyz, c, index)
    front = z > near
    ui = np.round(u[front]).astype(np.int64)
    vi = np.round(v[front]).astype(np.int64)
    zf = torch.from_numpy(z[front])
    colors = torch.from_numpy(cloud.rgb[front]).float() / 255.0
    pix_all, z_all, src_all = [], [], []
    src = torch.arange(len(zf))
    r = int(point_radius)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            uu, vv = ui + dx, vi + dy
            ok = torch.from_numpy((uu >= 0) & (uu < W) & (vv >= 0) & (vv < H))
            pix_all.append(torch.from_numpy(vv * W + uu)[ok])
            # a splat's outer pixels count as very slightly farther, so a point's own pixel wins ties
            z_all.append(zf[ok] * (1.0 + 1e-6 * (dx * dx + dy * dy)))
            src_all.append(src[ok])
    pix, zz, srcs = torch.cat(pix_all), torch.cat(z_all), torch.cat(src_all)
    depth.scatter_reduce_(0, pix, zz, reduce="amin")
    winner = zz == depth[pix]
    # equal depth (the same surface stored twice): the most recently added point wins, deterministically
    best = torch.full((H * W,), -1, dtype=torch.long)
    best.scatter_reduce_(0, pix[winner], srcs[winner], reduce="amax")
    hit = best >= 0
    img[hit] = colors[best[hit]]
    vis = torch.isfinite(depth)
    depth = torch.where(vis, depth, torch.zeros_like(depth))
    return img.view(H, W, 3), vis.float().view(H, W), depth.float().view(H, W)


def render_path(cloud: PointCloud, cams, point_radius: int = 1):
    """Render along a camera path -> (control video IMAGE [F, H, W, 3], visibility MASK [F, H, W])."""
    c = as_cameras(cams)
    frames, masks = [], []
    for i in range(len(c)):
        im, vis, _ = render(cloud, c, i, point_radius)
        frames.append(im)
        masks.append(vis)
    return torch.stack(frames), torch.stack(masks)


# ---- frustum overlap ---------------------------------------------------------------------------------------

def visible_points(cloud: PointCloud, cams, index: int, near: float = 1e-4, far: float = float("inf")) -> np.ndarray:
    """Bool [N]: which cloud points lie inside camera `index`'s view frustum."""
    c = as_cameras(cams)
    u, v, z = project(cloud.xyz, c, index)
    return (z > near) & (z < far) & (u >= -0.5) & (u < c.width - 0.5) & (v >= -0.5) & (v < c.height - 0.5)


def frustum_overlap(cloud: PointCloud, ref_cams, new_cams) -> np.ndarray:
    """Score per reference camera: |points seen by it and by any new camera| / |points seen by the new path|."""
    ref, new = as_cameras(ref_cams), as_cameras(new_cams)
    seen_new = np.zeros(len(cloud), bool)
    for i in range(len(new)):
        seen_new |= visible_points(cloud, new, i)
    total = max(int(seen_new.sum()), 1)
    return np.array([(visible_points(cloud, ref, j) & seen_new).sum() / total for j in range(len(ref))])


def select_reference_frames(cloud: PointCloud, ref_cams, new_cams, k: int = 3) -> list:
    """Indices of the k stored frames whose frusta overlap the new path most (best first, > 0 overlap only)."""
    scores = frustum_overlap(cloud, ref_cams, new_cams)
    order = [int(i) for i in np.argsort(-scores, kind="stable") if scores[i] > 0]
    return order[:k]


# ---- PLY ---------------------------------------------------------------------------------------------------

_PLY_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
_PLY_TYPES = {"float": "f4", "float32": "f4", "double": "f8", "float64": "f8", "uchar": "u1", "uint8": "u1",
              "char": "i1", "int8": "i1", "ushort": "u2", "uint16": "u2", "short": "i2", "int16": "i2",
              "uint": "u4", "uint32": "u4", "int": "i4", "int32": "i4"}


def save_ply(cloud: PointCloud, path: str) -> None:
    """Binary little-endian PLY with x, y, z (float) + red, green, blue (uchar); written atomically."""
    data = np.empty(len(cloud), dtype=_PLY_DTYPE)
    data["x"], data["y"], data["z"] = cloud.xyz[:, 0], cloud.xyz[:, 1], cloud.xyz[:, 2]
    data["red"], data["green"], data["blue"] = cloud.rgb[:, 0], cloud.rgb[:, 1], cloud.rgb[:, 2]
    header = ("ply\nformat binary_little_endian 1.0\ncomment VibeBoard location memory\n"
              f"element vertex {len(cloud)}\nproperty float x\nproperty float y\nproperty float z\n"
              "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n")
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(data.tobytes())
    os.replace(tmp, path)


def load_ply(path: str) -> PointCloud:
    """Read a vertex PLY (binary little/big endian or ascii) with x, y, z and optional red, green, blue."""
    with open(path, "rb") as f:
        if f.readline().strip() != b"ply":
            raise ValueError(f"{path} is not a PLY file")
        fmt, count, props, in_vertex = None, 0, [], False
        while True:
            line = f.readline()
            if not line:
                raise ValueError(f"{path}: PLY header has no end_header")
            parts = line.decode("ascii", "replace").split()
            if not parts:
                continue
            if parts[0] == "format":
                fmt = parts[1]
            elif parts[0] == "element":
                in_vertex = parts[1] == "vertex"
                if in_vertex:
                    count = int(parts[2])
            elif parts[0] == "property" and in_vertex:
                if parts[1] == "list":
                    raise ValueError(f"{path}: list properties on vertices are not supported")
                props.append((parts[2], _PLY_TYPES[parts[1]]))
            elif parts[0] == "end_header":
                break
        if fmt == "ascii":
            rows = np.loadtxt(f, max_rows=count, ndmin=2)
            data = {name: rows[:, i] for i, (name, _) in enumerate(props)}
        else:
            order = "<" if fmt == "binary_little_endian" else ">"
            dt = np.dtype([(n, order + t) for n, t in props])
            arr = np.frombuffer(f.read(dt.itemsize * count), dtype=dt, count=count)
            data = {n: arr[n] for n, _ in props}
    xyz = np.stack([data["x"], data["y"], data["z"]], axis=1).astype(np.float32)
    if "red" in data:
        rgb = np.stack([data["red"], data["green"], data["blue"]], axis=1).astype(np.uint8)
    else:
        rgb = np.full((count, 3), 255, np.uint8)
    return PointCloud(xyz, rgb)


# ---- location memory (VB_LOCATION) --------------------------------------------------------------------------

@dataclass
class LocationMemory:
    """A set: its point cloud plus the stored frames (image + camera) reference frames are chosen from."""
    cloud: PointCloud = field(default_factory=PointCloud.empty)
    frames: list = field(default_factory=list)      # IMAGE [H, W, 3] tensors
    cameras: list = field(default_factory=list)     # Cameras with one entry each
    voxel: float = 0.0
    path: Optional[str] = None

    def add_frame(self, image: torch.Tensor, depth: torch.Tensor, cams, index: int = 0, stride: int = 1,
                  store_frame: bool = True) -> None:
        cam = camera_at(cams, index)
        self.cloud = self.cloud.merged(unproject(depth, image, cam, 0, stride=stride), self.voxel)
        if store_frame:
            self.frames.append(image.detach().cpu().float())
            self.cameras.append(cam)

    def reference_cameras(self) -> Optional[Cameras]:
        if not self.cameras:
            return None
        c0 = self.cameras[0]
        return Cameras(np.concatenate([c.c2w for c in self.cameras]),
                       np.concatenate([c.intrinsics for c in self.cameras]), c0.width, c0.height)

    def save(self, folder: str) -> str:
        from safetensors.torch import save_file
        os.makedirs(folder, exist_ok=True)
        save_ply(self.cloud, _member(folder, "point_cloud.ply"))
        if self.frames:
            tmp_frames = _member(folder, "frames.safetensors.tmp")
            try:  # atomic: a failed write keeps the previous frames readable
                save_file({f"frame.{i}": (f.clamp(0, 1) * 255).round().to(torch.uint8).contiguous()
                           for i, f in enumerate(self.frames)}, tmp_frames)
                os.replace(tmp_frames, os.path.join(folder, "frames.safetensors"))
            finally:
                if os.path.exists(tmp_frames):
                    os.remove(tmp_frames)
        meta = {"format": "vibeboard.location", "version": 1, "voxel": self.voxel,
                "cameras": [{"c2w": c.c2w[0].tolist(), "intrinsics": c.intrinsics[0].tolist(), "width": c.width,
                             "height": c.height} for c in self.cameras]}
        tmp = _member(folder, "location.json.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=1)
        os.replace(tmp, os.path.join(folder, "location.json"))
        self.path = folder
        return folder

    @classmethod
    def load(cls, folder: str) -> "LocationMemory":
        ply = _member(folder, "point_cloud.ply")
        if not os.path.isfile(ply):
            raise FileNotFoundError(f"no location memory at {folder} (expected {ply})")
        try:
            mem = cls(cloud=load_ply(ply), path=folder)
            meta_path = _member(folder, "location.json")
            if os.path.isfile(meta_path):
                with open(meta_path, encoding="utf-8") as f:
                    meta = json.load(f)
                mem.voxel = float(meta.get("voxel", 0.0))
                mem.cameras = [Cameras(np.array([c["c2w"]]), np.array([c["intrinsics"]]), c["width"], c["height"])
                               for c in meta.get("cameras", [])]
                frames_path = _member(folder, "frames.safetensors")
                if mem.cameras and os.path.isfile(frames_path):
                    from safetensors.torch import load_file
                    t = load_file(frames_path)
                    mem.frames = [t[f"frame.{i}"].float() / 255.0 for i in range(len(mem.cameras))]
        except PathEscapeError:
            raise
        except Exception as exc:  # damaged files: one clear message instead of a parser's traceback
            raise ValueError(f"location memory at {folder} is damaged: {type(exc).__name__}: {exc}") from None
        return mem


def _member(folder: str, name: str) -> str:
    """A fixed file of a location folder; a link planted in its place must not lead reads or writes out of it."""
    return resolve_inside(folder, name, what="location memory file")


# ---- Spatia's latent layout as conditioning for the one Wan sampler ---------------------------------------------

def spatia_conditioning(prompt_embeds: torch.Tensor, negative_embeds: Optional[torch.Tensor],
                        reference_latents: torch.Tensor, shot_frames: int,
                        history_latents: Optional[torch.Tensor] = None, vace_context: Optional[torch.Tensor] = None,
                        patch_size=(1, 2, 2)):
    """Spatia's layout (`wan/wan_video_new.py` `WanVideoPipeline.__call__` / `model_fn_wan_video`) as a
    `WanConditioning` (conditioning builder):

    - reference frames (retrieved from the location memory, each VAE-encoded as an image, normalised,
      [1, C, R, h, w]) are prepended in time, sampled with per-token timestep 0, re-imposed after every step and
      dropped at the end; their RoPE is `ref_freqs`: temporal positions -R..-1 and rows h..2h (h = token rows);
    - history latents (the previous clip's last frames, [1, C, k, h, w]) are the shot's first k latent frames,
      also timestep 0 and re-imposed after every step;
    - `vace_context` ([1, 96, shot_frames, h, w], the rendered point cloud + visibility) gets zero context on the
      reference frames (Spatia runs its VACE branch on the non-reference tokens only; diffusers' VACE blocks see
      every token, so here the reference tokens get the hints of a zero context).
    """
    from ..wan.conditioning import HeldRegion, WanConditioning
    _, c, R, h, w = reference_latents.shape
    k = 0 if history_latents is None else history_latents.shape[2]
    total = R + shot_frames
    held = torch.zeros(1, c, total, h, w)
    held[:, :, :R] = reference_latents.float().cpu()
    if k:
        held[:, :, R:R + k] = history_latents.float().cpu()
    frames_mask = torch.zeros(1, 1, total, 1, 1)
    frames_mask[:, :, :R + k] = 1
    token_mask = frames_mask[0, :, :, 0, 0][..., None, None].expand(1, total, h, w).clone()
    cond = WanConditioning(prompt_embeds=prompt_embeds, negative_embeds=negative_embeds, num_ref_frames=R,
                           holds=[HeldRegion(held, frames_mask, "clean")], clean_token_mask=token_mask)
    cond.rope_positions = torch.tensor([i - R for i in range(R)] + list(range(shot_frames)))
    cond.rope_h_offsets = torch.tensor([h // patch_size[1]] * R + [0] * shot_frames)
    if vace_context is not None:
        cond.vace_context = torch.cat([torch.zeros_like(vace_context[:, :, :1]).expand(-1, -1, R, -1, -1),
                                       vace_context], dim=2)
    return cond
