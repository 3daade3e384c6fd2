"""Driving-video frames → FlashPortrait's per-frame driving features (head pose 6, eye 6, emotion 30, mouth 512).

Face landmarks come from the release's `face_landmark.onnx` (128² crop in → 222 points, euler angles, score);
the face is cropped around those points and the PD-FGC encoder (`pd_fpg.pth`) reads a 224² crop. The release's
`face_det.onnx` box decoding is not implemented yet: frames are searched from a centred square crop, which holds
for the framed talking-head drivers FlashPortrait is made for (say so to users with wide shots).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import flashportrait as fp


def _square(frame: torch.Tensor) -> torch.Tensor:
    h, w = frame.shape[:2]
    s = min(h, w)
    return frame[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]


def _resize(img_hwc: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(img_hwc.permute(2, 0, 1)[None], size=(size, size), mode="bilinear", align_corners=False)


@torch.no_grad()
def driving_features(frames: torch.Tensor, files: dict, device=None, batch: int = 16) -> torch.Tensor:
    """frames [N,H,W,3] 0..1 → features [1, N, 554]."""
    session = fp.onnx_session(files["face_landmark.onnx"])
    fan = fp.load_fan_encoder(files["pd_fpg.pth"]).to(device or "cpu")
    crops = []
    for frame in frames:
        sq = _square(frame)
        pts, _, _ = fp.landmarks(session, _resize(sq, 128))
        pts = pts[0]
        if float(pts.abs().max()) <= 1.5:  # normalised coordinates → crop pixels
            pts = pts * 128
        lo, hi = pts.min(0).values.clamp(0, 127), pts.max(0).values.clamp(0, 127)
        centre, half = (lo + hi) / 2, float((hi - lo).max()) * 0.6 + 8
        scale = sq.shape[0] / 128
        x0, y0 = [int(max(0, (c - half) * scale)) for c in centre.tolist()]
        x1, y1 = [int(min(sq.shape[0], (c + half) * scale)) for c in centre.tolist()]
        face = sq[y0:max(y1, y0 + 2), x0:max(x1, x0 + 2)]
        crops.append(_resize(face, 224)[0])
    out = []
    for i in range(0, len(crops), batch):
        out.append(fan(torch.stack(crops[i:i + batch]).to(device or "cpu")).float().cpu())
    return torch.cat(out)[None]
