"""Blocking → what the generative modules take: per-frame boxes for ReCo / region generation (Shot Studio's
`VB_BOXES`, normalised x0 y0 x1 y1 per frame) and camera paths for InfCam / Spatia (`VB_CAMERA_PATH`,
OpenCV camera-to-world + pixel intrinsics). Both are the pack's existing formats, not new ones."""
from __future__ import annotations

import numpy as np

from ..camera.path import CameraPath
from ..shots.boxes import Box, BoxSet
from .blocking import Blocking, project


def shot_camera_path(doc, shot, width: int | None = None, height: int | None = None,
                     relative_to_first: bool = False) -> CameraPath:
    doc = Blocking.parse(doc)
    s = doc.shot(shot)
    w, h = int(width or doc.data["width"]), int(height or doc.data["height"])
    frames = doc.shot_frames(s["name"])
    c2w = np.stack([doc.camera_c2w(s["camera"], f) for f in frames])
    k = np.array(doc.intrinsics(s["camera"], w, h), dtype=np.float64)
    path = CameraPath(c2w, k, w, h, doc.fps, meta={"source": "vibeboard.blocking", "shot": str(s["name"]),
                                                  "camera": s["camera"], "hfov_deg": doc.hfov(s["camera"]),
                                                  "world": "set (glTF: Y up, metres)"})
    return path.relative_to_first() if relative_to_first else path


def shot_boxes(doc, shot, width: int | None = None, height: int | None = None) -> BoxSet:
    """One box per actor visible in the shot, keyframed on every frame (frame 0 = the shot's first frame)."""
    doc = Blocking.parse(doc)
    s = doc.shot(shot)
    w, h = int(width or doc.data["width"]), int(height or doc.data["height"])
    k = doc.intrinsics(s["camera"], w, h)
    boxes = []
    for name in doc.actor_names():
        keys, first, last = [], None, None
        for i, f in enumerate(doc.shot_frames(s["name"])):
            px, z = project(doc.actor_box(name, f), doc.camera_c2w(s["camera"], f), k)
            if (z <= 0.05).any():
                continue
            x0, y0 = px.min(0)
            x1, y1 = px.max(0)
            box = (max(x0 / w, 0.0), max(y0 / h, 0.0), min(x1 / w, 1.0), min(y1 / h, 1.0))
            if box[0] >= box[2] or box[1] >= box[3]:
                continue  # out of frame
            keys.append((float(i), box))
            first = i if first is None else first
            last = i
        if keys:
            actor = doc.actor(name)
            boxes.append(Box(label=name, prompt=str(actor.get("prompt", name)), keyframes=keys,
                             frame_start=first, frame_end=last))
    return BoxSet(boxes, str(s["name"]))


def motions(doc) -> list:
    """The document's reusable motion for the Asset Bin motion library (`AssetDB.add_motion`): one
    `camera_path` per shot (the VB_CAMERA_PATH dict) and one `blocking_move` per actor (plan positions and
    facing per frame). Returns (name, kind, data) tuples."""
    doc = Blocking.parse(doc)
    out = []
    for s in doc.data["shots"]:
        path = shot_camera_path(doc, s["name"])
        out.append((f"shot {s['name']} camera {s['camera']}", "camera_path", path.to_dict()))
    total = sum(int(b["frames"]) for b in doc.data["beats"])
    for name in doc.actor_names():
        track = [{"frame": f, "position": doc.actor_position(name, f)[[0, 2]].round(6).tolist(),
                  "facing": doc.actor_facing(name, f).round(6).tolist()} for f in range(total)]
        out.append((f"{name} blocking", "blocking_move", {"actor": name, "fps": doc.fps, "units": "metres",
                                                          "frames": track}))
    return out
