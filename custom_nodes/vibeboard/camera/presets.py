"""Camera path builders: named moves, a 2D path drawn over the first frame, keyframes.

Every move is expressed in the first camera's frame (OpenCV: x right, y down, z forward); frame 0 is the
identity. Documented motion at `speed=1` (speed scales the amount, easing shapes it over time):

| preset          | what the camera does                                                 |
|-----------------|----------------------------------------------------------------------|
| static          | nothing                                                              |
| pan_left/right  | yaw 30° so the camera looks toward −x / +x (position fixed)          |
| tilt_up/down    | pitch 20° so the camera looks toward −y (up) / +y (down)             |
| roll_left/right | roll 15°; roll_right turns the camera's right side down (+z rotation) |
| dolly_in/out    | move 0.5·d along +z / −z (its own forward axis)                      |
| truck_left/right| move 0.3·d along −x / +x                                             |
| pedestal_up/down| move 0.3·d along −y / +y                                             |
| orbit_left/right| circle 90° around the subject at distance d, always facing it;       |
|                 | orbit_right moves the camera toward +x                               |
| arc_left/right  | the same circle, 30° (a gentle arc)                                  |
| zoom_in/out     | focal length ×1.5 / ÷1.5 (no motion)                                 |
| handheld        | smooth seeded shake only (0.6° rotation, 0.005·d translation)        |

`d` is `subject_distance` (scene units). Any preset can get extra `shake` (0..1) with a `seed`.
"""
from __future__ import annotations

import math

import numpy as np

from .path import CameraPath, intrinsics_from_fov
from .rotations import matrix_from_quat, orthonormalize, rot_x, rot_y, rot_z, slerp_matrix, yaw_pitch_roll

PRESETS = ["static", "pan_left", "pan_right", "tilt_up", "tilt_down", "roll_left", "roll_right",
           "dolly_in", "dolly_out", "truck_left", "truck_right", "pedestal_up", "pedestal_down",
           "orbit_left", "orbit_right", "arc_left", "arc_right", "zoom_in", "zoom_out", "handheld"]
EASINGS = ["linear", "ease_in", "ease_out", "ease_in_out"]

PAN_DEG, TILT_DEG, ROLL_DEG = 30.0, 20.0, 15.0
DOLLY, TRUCK = 0.5, 0.3            # × subject_distance
ORBIT_DEG, ARC_DEG = 90.0, 30.0
ZOOM = 1.5
SHAKE_ROT_DEG, SHAKE_MOVE = 0.6, 0.005


def ease(name: str, u):
    u = np.clip(np.asarray(u, dtype=np.float64), 0.0, 1.0)
    if name == "linear":
        return u
    if name == "ease_in":
        return u * u
    if name == "ease_out":
        return 1 - (1 - u) ** 2
    if name == "ease_in_out":
        return u * u * (3 - 2 * u)
    raise ValueError(f"unknown easing {name!r}; choose one of {EASINGS}")


def _pose(r: np.ndarray, t) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = r
    m[:3, 3] = t
    return m


def preset_path(name: str, num_frames: int = 81, width: int = 832, height: int = 480, speed: float = 1.0,
                easing: str = "ease_in_out", fov_deg: float = 60.0, subject_distance: float = 1.0,
                shake: float = 0.0, seed: int = 0, fps: float = 16.0) -> CameraPath:
    if name not in PRESETS:
        raise ValueError(f"unknown camera preset {name!r}; choose one of {PRESETS}")
    if num_frames < 1:
        raise ValueError("num_frames must be >= 1")
    n = num_frames
    s = ease(easing, np.linspace(0.0, 1.0, n) if n > 1 else np.zeros(1)) * float(speed)
    d = float(subject_distance)
    k0 = np.array(intrinsics_from_fov(width, height, fov_deg))
    c2w = np.zeros((n, 4, 4))
    k = np.repeat(k0[None], n, axis=0)
    direction = -1.0 if name.endswith(("_left", "_up", "_out")) else 1.0
    for t in range(n):
        a = s[t]
        r, pos = np.eye(3), np.zeros(3)
        if name.startswith("pan_"):
            r = rot_y(direction * math.radians(PAN_DEG) * a)
        elif name.startswith("tilt_"):
            # tilt_up must look toward −y: rot_x(+θ) maps z to (0, −sinθ, cosθ)
            r = rot_x(-direction * math.radians(TILT_DEG) * a)
        elif name.startswith("roll_"):
            r = rot_z(direction * math.radians(ROLL_DEG) * a)
        elif name.startswith("dolly_"):
            pos = np.array([0.0, 0.0, direction * DOLLY * d * a])
        elif name.startswith("truck_"):
            pos = np.array([direction * TRUCK * d * a, 0.0, 0.0])
        elif name.startswith("pedestal_"):
            pos = np.array([0.0, direction * TRUCK * d * a, 0.0])
        elif name.startswith(("orbit_", "arc_")):
            total = ORBIT_DEG if name.startswith("orbit_") else ARC_DEG
            phi = -direction * math.radians(total) * a  # orbit_right: yaw left to keep facing the subject
            r = rot_y(phi)
            pivot = np.array([0.0, 0.0, d])
            pos = pivot - d * (r @ np.array([0.0, 0.0, 1.0]))
        elif name.startswith("zoom_"):
            k[t, :2] = k0[:2] * (ZOOM ** (direction * a))
        c2w[t] = _pose(r, pos)
    path = CameraPath(c2w=c2w, intrinsics=k, width=width, height=height, fps=fps,
                      meta={"preset": name, "speed": speed, "easing": easing})
    amount = 1.0 if name == "handheld" else float(shake)
    if amount > 0:
        path = path.compose(shake_path(n, width, height, amount, seed, d, fps, k0))
    return path


def shake_path(num_frames: int, width: int, height: int, amount: float = 1.0, seed: int = 0,
               subject_distance: float = 1.0, fps: float = 16.0, k0=None) -> CameraPath:
    """Handheld shake: a few incommensurate sinusoids per axis with seeded phases (smooth, zero at frame 0)."""
    rng = np.random.default_rng(int(seed))
    t = np.arange(num_frames) / float(fps)
    freqs = np.array([0.35, 0.9, 1.7])  # Hz: slow sway, breathing, hand tremor
    weights = np.array([1.0, 0.5, 0.2])

    def signal():
        phases = rng.uniform(0, 2 * math.pi, size=3)
        x = (weights[:, None] * np.sin(2 * math.pi * freqs[:, None] * t[None] + phases[:, None])).sum(0)
        x = x - x[0]
        return x / weights.sum()

    rot = math.radians(SHAKE_ROT_DEG) * amount
    move = SHAKE_MOVE * subject_distance * amount
    yaw, pitch, roll = signal() * rot, signal() * rot, signal() * rot * 0.5
    txyz = np.stack([signal(), signal(), signal() * 0.5], axis=1) * move
    c2w = np.stack([_pose(yaw_pitch_roll(yaw[i], pitch[i], roll[i]), txyz[i]) for i in range(num_frames)])
    k0 = np.array(k0 if k0 is not None else intrinsics_from_fov(width, height))
    return CameraPath(c2w=c2w, intrinsics=k0, width=width, height=height, fps=fps, meta={"shake": amount})


def _resample_polyline(points: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    if cum[-1] <= 0:
        return np.repeat(points[:1], len(fractions), axis=0)
    target = fractions * cum[-1]
    x = np.interp(target, cum, points[:, 0])
    y = np.interp(target, cum, points[:, 1])
    return np.stack([x, y], axis=1)


def path_from_2d(points, num_frames: int = 81, width: int = 832, height: int = 480, mode: str = "pan_tilt",
                 easing: str = "linear", fov_deg: float = 60.0, subject_distance: float = 1.0,
                 fps: float = 16.0) -> CameraPath:
    """Camera path from a polyline drawn over the first frame (points normalised to [0, 1], y down).

    The drawn displacement moves the frame centre: at time u the camera frames the image point
    centre + (p(u) − p(0)). `pan_tilt` rotates the camera (yaw/pitch, no roll) so that point's ray becomes
    the optical axis; `truck` translates the camera so that content at `subject_distance` moves by exactly
    the drawn displacement. Points are spaced by arc length, timed with `easing`.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(pts) == 0:
        raise ValueError("2D camera path: no points")
    if len(pts) == 1:
        pts = np.repeat(pts, 2, axis=0)
    u = ease(easing, np.linspace(0, 1, num_frames) if num_frames > 1 else np.zeros(1))
    samples = _resample_polyline(pts, u)
    offsets = samples - pts[0]
    fx, fy, cx, cy = intrinsics_from_fov(width, height, fov_deg)
    c2w = np.zeros((num_frames, 4, 4))
    for t, (ox, oy) in enumerate(offsets):
        px, py = cx + ox * width, cy + oy * height
        if mode == "pan_tilt":
            ray = np.array([(px - cx) / fx, (py - cy) / fy, 1.0])
            ray /= np.linalg.norm(ray)
            yaw = math.atan2(ray[0], ray[2])
            pitch = math.asin(-ray[1])  # rot_x(+θ) looks up (−y)
            c2w[t] = _pose(rot_y(yaw) @ rot_x(pitch), np.zeros(3))
        elif mode == "truck":
            move = np.array([ox * width / fx, oy * height / fy, 0.0]) * subject_distance
            c2w[t] = _pose(np.eye(3), move)
        else:
            raise ValueError(f"2D camera path: unknown mode {mode!r} (pan_tilt or truck)")
    return CameraPath(c2w=c2w, intrinsics=np.array([fx, fy, cx, cy]), width=width, height=height, fps=fps,
                      meta={"from_2d": mode, "points": pts.tolist()})


def _finite(kf: dict, key: str, value, shape: tuple) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != shape or not np.isfinite(arr).all():
        raise ValueError(f"keyframe at frame {kf.get('frame')}: '{key}' must be {shape} finite numbers, got {value!r}")
    return arr


def _keyframe_pose(kf: dict) -> np.ndarray:
    if "c2w" in kf:
        m = np.asarray(kf["c2w"], dtype=np.float64)
        if m.shape == (3, 4):
            m = np.vstack([m, [0, 0, 0, 1]])
        m = _finite(kf, "c2w", m, (4, 4)).copy()
        m[:3, :3] = orthonormalize(m[:3, :3])
        return m
    pos = _finite(kf, "position", kf.get("position", [0, 0, 0]), (3,))
    if "quaternion" in kf:  # (w, x, y, z)
        q = _finite(kf, "quaternion", kf["quaternion"], (4,))
        if np.linalg.norm(q) < 1e-12:
            raise ValueError(f"keyframe at frame {kf.get('frame')}: the quaternion is zero")
        r = matrix_from_quat(q)
    else:
        r = yaw_pitch_roll(*(math.radians(kf.get(key, 0.0)) for key in ("yaw", "pitch", "roll")))
    return _pose(r, pos)


def path_from_keyframes(keyframes: list, num_frames: int | None = None, width: int = 832, height: int = 480,
                        fov_deg: float = 60.0, easing: str = "linear", fps: float = 16.0) -> CameraPath:
    """Interpolate keyframes `{frame, c2w | position + (quaternion | yaw/pitch/roll degrees), [fx, fy, cx, cy |
    zoom]}`: slerp for rotation, lerp for position and intrinsics, `easing` inside each segment.
    Frames before the first / after the last keyframe hold that keyframe."""
    if not keyframes:
        raise ValueError("keyframes: empty list")
    kfs = sorted(keyframes, key=lambda k: int(k["frame"]))
    frames = [int(k["frame"]) for k in kfs]
    if len(set(frames)) != len(frames):
        raise ValueError("keyframes: two keyframes on the same frame")
    n = int(num_frames) if num_frames else frames[-1] + 1
    base_k = np.array(intrinsics_from_fov(width, height, fov_deg))
    poses, ks = [], []
    for kf in kfs:
        poses.append(_keyframe_pose(kf))
        k = base_k.copy()
        if "zoom" in kf:
            k[:2] *= float(kf["zoom"])
        for i, key in enumerate(("fx", "fy", "cx", "cy")):
            if key in kf:
                k[i] = float(kf[key])
        ks.append(k)
    c2w = np.zeros((n, 4, 4))
    kk = np.zeros((n, 4))
    for t in range(n):
        j = int(np.searchsorted(frames, t, side="right")) - 1
        if j < 0:
            c2w[t], kk[t] = poses[0], ks[0]
            continue
        if j >= len(frames) - 1:
            c2w[t], kk[t] = poses[-1], ks[-1]
            continue
        u = float(ease(easing, (t - frames[j]) / (frames[j + 1] - frames[j])))
        c2w[t] = np.eye(4)
        c2w[t, :3, :3] = slerp_matrix(poses[j][:3, :3], poses[j + 1][:3, :3], u)
        c2w[t, :3, 3] = (1 - u) * poses[j][:3, 3] + u * poses[j + 1][:3, 3]
        kk[t] = (1 - u) * ks[j] + u * ks[j + 1]
    return CameraPath(c2w=c2w, intrinsics=kk, width=width, height=height, fps=fps,
                      meta={"keyframes": len(kfs)})
