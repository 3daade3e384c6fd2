"""VB_CAMERA_PATH: a per-frame camera trajectory shared by every VibeBoard module.

Conventions (fixed; other modules rely on them):
- Extrinsics are **camera-to-world** 4×4 matrices, OpenCV camera axes: **x right, y down, z forward**.
  World units are arbitrary ("scene units"); presets measure distances in multiples of `subject_distance`.
- Frame 0 of a generated path is the identity (the world frame is the first camera), unless a path is
  imported with absolute poses; `relative_to_first()` re-bases any path that way.
- Intrinsics are per frame `(fx, fy, cx, cy)` in **pixels** of a `width × height` image, pixel centres at
  integer coordinates (pixel (0,0) is the centre of the top-left pixel).
- A point X_world projects to pixel K · (R_c2wᵀ (X − t)), i.e. w2c = inverse(c2w).

Interchange formats:
- `to_dict()` / `from_dict()` (our JSON), `to_realestate10k()` / `from_realestate10k()` (text lines
  `timestamp fx fy cx cy 0 0 w2c(3×4 row-major)`, intrinsics normalised by width/height),
  `to_comfy_wan_poses()` / `from_comfy_wan_poses()` (ComfyUI `WanCameraEmbedding` entries
  `[0, fx/W, fy/H, cx/W, cy/H, 0, 0, c2w 4×4 row-major]`), `wan_camera_embedding()` (the Plücker tensor
  ComfyUI's `WanCameraEmbedding` node outputs), `infcam_inputs()` (InfCam's per-latent-frame 3×4 c2w).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

from .rotations import orthonormalize, slerp_matrix

FORMAT_NAME = "vibeboard.camera_path"
FORMAT_VERSION = 1


def intrinsics_from_fov(width: int, height: int, fov_deg: float = 60.0) -> tuple:
    """Square pixels, principal point at the image centre, horizontal field of view `fov_deg`."""
    fx = (width / 2.0) / math.tan(math.radians(fov_deg) / 2.0)
    return fx, fx, (width - 1) / 2.0, (height - 1) / 2.0


@dataclass
class CameraPath:
    c2w: np.ndarray            # [T, 4, 4] float64, OpenCV camera-to-world
    intrinsics: np.ndarray     # [T, 4] float64 (fx, fy, cx, cy) in pixels
    width: int
    height: int
    fps: float = 16.0
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.c2w = np.asarray(self.c2w, dtype=np.float64).reshape(-1, 4, 4).copy()
        k = np.asarray(self.intrinsics, dtype=np.float64)
        if k.ndim == 1:
            k = np.repeat(k[None], len(self.c2w), axis=0)
        self.intrinsics = k.reshape(-1, 4).copy()
        if len(self.intrinsics) != len(self.c2w):
            raise ValueError(f"camera path: {len(self.c2w)} poses but {len(self.intrinsics)} intrinsics")
        if len(self.c2w) == 0:
            raise ValueError("camera path: no frames")
        self.width, self.height = int(self.width), int(self.height)

    # --- basic views ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.c2w)

    @property
    def num_frames(self) -> int:
        return len(self.c2w)

    @property
    def rotations(self) -> np.ndarray:
        return self.c2w[:, :3, :3]

    @property
    def positions(self) -> np.ndarray:
        return self.c2w[:, :3, 3]

    def K(self) -> np.ndarray:
        """[T, 3, 3] pixel intrinsic matrices."""
        k = np.zeros((len(self), 3, 3))
        k[:, 0, 0], k[:, 1, 1], k[:, 0, 2], k[:, 1, 2] = self.intrinsics.T
        k[:, 2, 2] = 1.0
        return k

    def w2c(self) -> np.ndarray:
        return np.linalg.inv(self.c2w)

    def copy(self, **changes) -> "CameraPath":
        data = dict(c2w=self.c2w.copy(), intrinsics=self.intrinsics.copy(), width=self.width,
                    height=self.height, fps=self.fps, meta=dict(self.meta))
        data.update(changes)
        return CameraPath(**data)

    # --- operations -------------------------------------------------------------------------------
    def relative_to_first(self) -> "CameraPath":
        """Re-base so frame 0 is the identity (what InfCam and CameraCtrl-style models expect)."""
        base = np.linalg.inv(self.c2w[0])
        return self.copy(c2w=np.einsum("ij,tjk->tik", base, self.c2w))

    def orthonormalized(self) -> "CameraPath":
        c2w = self.c2w.copy()
        for t in range(len(c2w)):
            c2w[t, :3, :3] = orthonormalize(c2w[t, :3, :3])
        return self.copy(c2w=c2w)

    def compose(self, local: "CameraPath") -> "CameraPath":
        """Apply `local` (motion expressed in this path's camera frame, e.g. a handheld shake) on top:
        c2w[t] = self.c2w[t] · local.c2w[t]. The shorter path is held on its last frame."""
        n = max(len(self), len(local))
        a = self.resampled_hold(n)
        b = local.resampled_hold(n)
        scale = b.intrinsics[:, :2] / b.intrinsics[:1, :2]  # local zoom multiplies ours
        k = a.intrinsics.copy()
        k[:, :2] *= scale
        return a.copy(c2w=np.einsum("tij,tjk->tik", a.c2w, b.c2w), intrinsics=k)

    def concatenate(self, after: "CameraPath") -> "CameraPath":
        """Play `after` once this path ends, starting from this path's last pose (its frame 0 is dropped)."""
        last = self.c2w[-1]
        rel = after.relative_to_first()
        tail = np.einsum("ij,tjk->tik", last, rel.c2w[1:])
        zoom = rel.intrinsics[1:, :2] / rel.intrinsics[:1, :2]
        k_tail = np.repeat(self.intrinsics[-1:], len(tail), axis=0)
        k_tail[:, :2] *= zoom
        return self.copy(c2w=np.concatenate([self.c2w, tail]),
                         intrinsics=np.concatenate([self.intrinsics, k_tail]))

    def resampled_hold(self, n: int) -> "CameraPath":
        if n <= len(self):
            return self.copy(c2w=self.c2w[:n], intrinsics=self.intrinsics[:n])
        pad = n - len(self)
        return self.copy(c2w=np.concatenate([self.c2w, np.repeat(self.c2w[-1:], pad, 0)]),
                         intrinsics=np.concatenate([self.intrinsics, np.repeat(self.intrinsics[-1:], pad, 0)]))

    def resample(self, n: int) -> "CameraPath":
        """Retime to n frames: slerp rotations, lerp positions and intrinsics (keeps rotations orthonormal)."""
        if n < 1:
            raise ValueError("resample: n must be >= 1")
        src = np.linspace(0, len(self) - 1, n)
        c2w = np.zeros((n, 4, 4))
        k = np.zeros((n, 4))
        for i, s in enumerate(src):
            a = int(math.floor(s))
            b = min(a + 1, len(self) - 1)
            u = s - a
            c2w[i] = np.eye(4)
            c2w[i, :3, :3] = slerp_matrix(self.c2w[a, :3, :3], self.c2w[b, :3, :3], u)
            c2w[i, :3, 3] = (1 - u) * self.c2w[a, :3, 3] + u * self.c2w[b, :3, 3]
            k[i] = (1 - u) * self.intrinsics[a] + u * self.intrinsics[b]
        return self.copy(c2w=c2w, intrinsics=k)

    def scaled_to(self, width: int, height: int) -> "CameraPath":
        """Same cameras for a resized image (pixel-centre convention: c' = (c + 0.5)·s − 0.5)."""
        sx, sy = width / self.width, height / self.height
        k = self.intrinsics.copy()
        k[:, 0] *= sx
        k[:, 1] *= sy
        k[:, 2] = (k[:, 2] + 0.5) * sx - 0.5
        k[:, 3] = (k[:, 3] + 0.5) * sy - 0.5
        return self.copy(intrinsics=k, width=width, height=height)

    def latent_frame_indices(self, temporal_stride: int = 4) -> list:
        """Pixel frames that Wan's causal VAE keeps as latent frames: 0, 4, 8, ... (81 → 21)."""
        return list(range(0, len(self), temporal_stride))

    # --- our JSON -----------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": FORMAT_NAME, "version": FORMAT_VERSION, "convention": "opencv_c2w",
            "width": self.width, "height": self.height, "fps": self.fps, "meta": self.meta,
            "frames": [{"c2w": self.c2w[t].tolist(), "fx": float(self.intrinsics[t, 0]),
                        "fy": float(self.intrinsics[t, 1]), "cx": float(self.intrinsics[t, 2]),
                        "cy": float(self.intrinsics[t, 3])} for t in range(len(self))],
        }

    def to_json(self, indent=None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict) -> "CameraPath":
        if data.get("format") not in (None, FORMAT_NAME):
            raise ValueError(f"camera path JSON: unknown format {data.get('format')!r}")
        if data.get("convention", "opencv_c2w") != "opencv_c2w":
            raise ValueError(f"camera path JSON: unsupported convention {data.get('convention')!r}")
        frames = data.get("frames") or []
        if not frames:
            raise ValueError("camera path JSON: 'frames' is empty")
        c2w = np.array([f["c2w"] for f in frames], dtype=np.float64)
        k = np.array([[f["fx"], f["fy"], f["cx"], f["cy"]] for f in frames], dtype=np.float64)
        return cls(c2w=c2w, intrinsics=k, width=data["width"], height=data["height"],
                   fps=float(data.get("fps", 16.0)), meta=dict(data.get("meta") or {}))

    @classmethod
    def from_json(cls, text: str) -> "CameraPath":
        return cls.from_dict(json.loads(text))

    # --- RealEstate10K / CameraCtrl lines -------------------------------------------------------------
    def to_realestate10k(self, url: str = "") -> str:
        w2c = self.w2c()
        lines = [url or "vibeboard"]
        for t in range(len(self)):
            fx, fy, cx, cy = self.intrinsics[t]
            stamp = int(round(t / self.fps * 1e6))
            vals = [fx / self.width, fy / self.height, (cx + 0.5) / self.width, (cy + 0.5) / self.height, 0, 0]
            vals += w2c[t, :3, :4].reshape(-1).tolist()
            lines.append(" ".join([str(stamp)] + [repr(float(v)) for v in vals]))
        return "\n".join(lines) + "\n"

    @classmethod
    def from_realestate10k(cls, text: str, width: int, height: int, fps: float = 16.0) -> "CameraPath":
        rows = []
        for line in text.strip().splitlines():
            parts = line.split()
            if len(parts) != 19:
                continue  # the URL header or blank lines
            rows.append([float(p) for p in parts])
        if not rows:
            raise ValueError("RealEstate10K text: no 19-value pose lines found")
        return cls._from_entries(rows, width, height, fps, c2w_4x4=False)

    # --- ComfyUI WanCameraEmbedding poses ---------------------------------------------------------------
    def to_comfy_wan_poses(self) -> list:
        """Per frame `[0, fx/W, fy/H, cx/W, cy/H, 0, 0, c2w 4×4 row-major]` (ComfyUI's camera entries)."""
        out = []
        for t in range(len(self)):
            fx, fy, cx, cy = self.intrinsics[t]
            out.append([0.0, fx / self.width, fy / self.height, (cx + 0.5) / self.width,
                        (cy + 0.5) / self.height, 0.0, 0.0] + self.c2w[t].reshape(-1).tolist())
        return out

    @classmethod
    def from_comfy_wan_poses(cls, entries, width: int, height: int, fps: float = 16.0) -> "CameraPath":
        """Accepts ComfyUI entries (23 values, c2w 4×4) or RealEstate10K/CameraCtrl entries (19, w2c 3×4)."""
        entries = [list(map(float, e)) for e in entries]
        if not entries:
            raise ValueError("camera poses: empty list")
        n = len(entries[0])
        if n == 23:
            return cls._from_entries(entries, width, height, fps, c2w_4x4=True)
        if n == 22:  # without the leading frame-index column
            return cls._from_entries([[0.0] + e for e in entries], width, height, fps, c2w_4x4=True)
        if n == 19:
            return cls._from_entries(entries, width, height, fps, c2w_4x4=False)
        raise ValueError(f"camera poses: entries have {n} values; expected 23 (ComfyUI) or 19 (RealEstate10K)")

    @classmethod
    def _from_entries(cls, rows, width, height, fps, c2w_4x4: bool) -> "CameraPath":
        rows = np.asarray(rows, dtype=np.float64)
        k = np.stack([rows[:, 1] * width, rows[:, 2] * height,
                      rows[:, 3] * width - 0.5, rows[:, 4] * height - 0.5], axis=1)
        if c2w_4x4:
            c2w = rows[:, 7:23].reshape(-1, 4, 4)
        else:
            w2c = np.tile(np.eye(4), (len(rows), 1, 1))
            w2c[:, :3, :4] = rows[:, 7:19].reshape(-1, 3, 4)
            c2w = np.linalg.inv(w2c)
        path = cls(c2w=c2w, intrinsics=k, width=width, height=height, fps=fps)
        return path.orthonormalized()

    # --- model inputs ---------------------------------------------------------------------------------
    def infcam_inputs(self, temporal_stride: int = 4):
        """InfCam's camera inputs: (extrinsics [F_lat, 12] = relative c2w 3×4 row-major at latent frames,
        intrinsics [4] = (fx, fy, cx, cy) of frame 0 in pixels). The model normalises K by the width."""
        rel = self.relative_to_first()
        idx = rel.latent_frame_indices(temporal_stride)
        ext = rel.c2w[idx, :3, :4].reshape(len(idx), 12)
        return ext, rel.intrinsics[idx]

    def wan_camera_embedding(self, width: int | None = None, height: int | None = None):
        """Plücker ray tensor shaped like ComfyUI `WanCameraEmbedding`'s output: [1, 24, (T+3)//4, H, W]
        (6 channels × the 4 pixel frames folded into each latent frame; the first frame repeated 4×).
        Uses this path's own pixel intrinsics (ComfyUI's node additionally rescales fx for a 1280×720
        source aspect; we do not, since our intrinsics are already in the output's pixels)."""
        import torch

        width = width or self.width
        height = height or self.height
        path = self.relative_to_first().scaled_to(width, height)
        c2w = torch.as_tensor(path.c2w, dtype=torch.float32)
        k = torch.as_tensor(path.intrinsics, dtype=torch.float32)
        j, i = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
                              indexing="ij")
        x = (i[None] - k[:, 2, None, None]) / k[:, 0, None, None]
        y = (j[None] - k[:, 3, None, None]) / k[:, 1, None, None]
        d = torch.stack([x, y, torch.ones_like(x)], dim=-1)
        d = d / d.norm(dim=-1, keepdim=True)
        rays_d = torch.einsum("thwc,tkc->thwk", d, c2w[:, :3, :3])
        rays_o = c2w[:, None, None, :3, 3].expand_as(rays_d)
        plucker = torch.cat([torch.linalg.cross(rays_o, rays_d, dim=-1), rays_d], dim=-1)  # T,H,W,6
        video = plucker.permute(3, 0, 1, 2)[None]  # 1,6,T,H,W
        video = torch.cat([video[:, :, :1].repeat(1, 1, 4, 1, 1), video[:, :, 1:]], dim=2)
        b, c, f, h, w = video.shape
        f4 = f // 4
        # channel = 4·c + sub-frame, as ComfyUI folds them (view(b, f/4, 4, c) then transpose(2, 3))
        video = video[:, :, : f4 * 4].reshape(b, c, f4, 4, h, w).permute(0, 1, 3, 2, 4, 5)
        return video.reshape(b, 4 * c, f4, h, w).contiguous()


def parse_camera_path(value, width: int = 832, height: int = 480, fps: float = 16.0) -> CameraPath:
    """Read any supported text: our JSON, a JSON list of ComfyUI/RealEstate10K entries, or RealEstate10K lines."""
    if isinstance(value, CameraPath):
        return value
    text = value.strip() if isinstance(value, str) else value
    if isinstance(text, str) and text[:1] in "[{":
        data = json.loads(text)
    else:
        data = text
    if isinstance(data, dict):
        return CameraPath.from_dict(data)
    if isinstance(data, list):
        return CameraPath.from_comfy_wan_poses(data, width, height, fps)
    return CameraPath.from_realestate10k(str(text), width, height, fps)
