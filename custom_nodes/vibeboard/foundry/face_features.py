"""Driving-video frames → FlashPortrait's per-frame driving features (head pose 6, eye 6, emotion 30, mouth 512),
with the release's own face models, decoded as upstream does (`wan/models/face_det.py`, `face_align.py`,
`face_utils.py`, `pdf.py` at Francis-Rings/FlashPortrait@c72d9de):

1. `face_det.onnx` is a NanoDet face detector: a BGR frame resized keeping its aspect ratio into 160×272 (w×h),
   normalised with mean (103.53, 116.28, 123.675) / std (57.375, 57.12, 58.395); six outputs — class scores for
   strides 8, 16, 32 (already sigmoid-ed), then box distributions (4 sides × 8 bins, "generalised focal loss")
   for the same strides. A side's distance is the softmax-expectation over bins 0…7 times the stride, from the
   anchor point (col·stride, row·stride); candidates over 0.4 go through hard NMS (IoU 0.3) and back to the frame.
2. `face_landmark.onnx` reads a 128² BGR crop (0..1) warped from the box (scaled so the box's longer side fills
   85 % of it) → 222 points (x's then y's, ×128), euler angles, a score; two more passes re-crop from the points,
   rotated by the eye-corner angle (points 74, 96).
3. PD-FGC (`pd_fpg.pth`) reads a 224² RGB crop (−1..1) aligned by a similarity (Umeyama) from five landmarks.
No OpenCV: warps are `grid_sample` on pixel-centre coordinates (cv2.warpAffine's convention).
"""
from __future__ import annotations

import math
from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F

from . import flashportrait as fp

DET_INPUT_HW = (272, 160)
DET_STRIDES = (8, 16, 32)
DET_REG_MAX = 7
DET_MEAN_BGR = (103.53, 116.28, 123.675)
DET_STD_BGR = (57.375, 57.12, 58.395)
LANDMARK_SIZE, EXPAND = 128, 0.15
EYE_CORNERS = (74, 96)
PD_FGC_POINTS = (182, 202, 36, 149, 133)
PD_FGC_TEMPLATE = np.array([[0.3843, 0.27], [0.62, 0.2668], [0.503, 0.4185], [0.406, 0.5273], [0.5977, 0.525]])


# ---- geometry -------------------------------------------------------------------------------------------------------
def warp_affine(image: np.ndarray, m: np.ndarray, size: Tuple[int, int], mode: str = "bilinear") -> np.ndarray:
    """cv2.warpAffine(image [H,W,C], m [2,3], (w, h)) with a black border: out(x, y) = image(m⁻¹·(x, y, 1))."""
    w, h = size
    inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    src = np.stack([xs, ys, np.ones_like(xs)], -1) @ inv.T                     # [h, w, 2] source pixel coords
    ih, iw = image.shape[:2]
    grid = np.stack([src[..., 0] / max(iw - 1, 1), src[..., 1] / max(ih - 1, 1)], -1) * 2 - 1
    img = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]
    out = F.grid_sample(img, torch.from_numpy(grid).float()[None], mode=mode, padding_mode="zeros",
                        align_corners=True)
    return out[0].permute(1, 2, 0).numpy()


def resize_matrix(raw_wh: Tuple[int, int], dst_wh: Tuple[int, int]) -> np.ndarray:
    """Upstream's keep-ratio resize: scale to fit, centred (3×3)."""
    (rw, rh), (dw, dh) = raw_wh, dst_wh
    ratio = dh / rh if rw / rh < dw / dh else dw / rw
    return np.array([[ratio, 0, dw / 2 - ratio * rw / 2], [0, ratio, dh / 2 - ratio * rh / 2], [0, 0, 1.0]])


def rotation_matrix(center, angle_deg: float, scale: float) -> np.ndarray:
    """cv2.getRotationMatrix2D."""
    a = math.radians(angle_deg)
    al, be = scale * math.cos(a), scale * math.sin(a)
    cx, cy = center
    return np.array([[al, be, (1 - al) * cx - be * cy], [-be, al, be * cx + (1 - al) * cy]])


def apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


def invert(m: np.ndarray) -> np.ndarray:
    return np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2]


def box_crop_matrix(box, size: int = LANDMARK_SIZE, expand: float = EXPAND) -> np.ndarray:
    """face_utils.get_warp_mat_bbox: the box centred, its longer side × (1 − expand) filling the crop."""
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    m = rotation_matrix((cx, cy), 0.0, size / max(x1 - x0, y1 - y0) * (1 - expand))
    m[:, 2] += [size / 2 - cx, size / 2 - cy]
    return m


def points_crop_matrix(pts: np.ndarray, angle_deg: float, size: int = LANDMARK_SIZE,
                       expand: float = EXPAND) -> np.ndarray:
    """face_utils.get_warp_mat_bbox_by_gt_pts_float: rotate by `angle` about the points' box centre, scale their
    rotated extent to the crop, centre them."""
    cx, cy = (pts[:, 0].min() + pts[:, 0].max()) / 2, (pts[:, 1].min() + pts[:, 1].max()) / 2
    rotated = apply(rotation_matrix((cx, cy), angle_deg, 1.0), pts)
    scale = size / max(np.ptp(rotated[:, 0]), np.ptp(rotated[:, 1])) * (1 - expand)
    m = rotation_matrix((cx, cy), angle_deg, scale)
    placed = apply(m, pts)
    m[:, 2] += [size / 2 - (placed[:, 0].min() + placed[:, 0].max()) / 2,
                size / 2 - (placed[:, 1].min() + placed[:, 1].max()) / 2]
    return m


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) taking src → dst; 2×3."""
    n, dim = src.shape
    mu_s, mu_d = src.mean(0), dst.mean(0)
    ds, dd = src - mu_s, dst - mu_d
    a = dd.T @ ds / n
    d = np.ones(dim)
    if np.linalg.det(a) < 0:
        d[-1] = -1
    u, s, vt = np.linalg.svd(a)
    r = u @ np.diag(d) @ vt
    scale = (s * d).sum() / ds.var(0).sum()
    return np.hstack([scale * r, (mu_d - scale * r @ mu_s)[:, None]])


# ---- face_det.onnx (NanoDet) ----------------------------------------------------------------------------------------
def iou(boxes: np.ndarray, box: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    lt, rb = np.maximum(boxes[:, :2], box[:2]), np.minimum(boxes[:, 2:], box[2:])
    inter = np.clip(rb - lt, 0, None).prod(1)
    area = lambda b: np.clip(b[..., 2:] - b[..., :2], 0, None).prod(-1)  # noqa: E731
    return inter / (area(boxes) + area(box) - inter + eps)


def hard_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.3, candidates: int = 200) -> np.ndarray:
    """Indices kept, best first: the best remaining box suppresses every box overlapping it by > iou_threshold."""
    order = np.argsort(scores, kind="stable")[-candidates:]
    keep = []
    while len(order):
        best = order[-1]
        keep.append(best)
        order = order[:-1]
        order = order[iou(boxes[order], boxes[best]) <= iou_threshold]
    return np.array(keep, dtype=np.int64)


def decode_detections(scores, distributions, input_hw=DET_INPUT_HW, strides=DET_STRIDES, reg_max=DET_REG_MAX,
                      threshold: float = 0.4, iou_threshold: float = 0.3, candidates: int = 1000):
    """Raw head outputs (per stride: scores [N] or [N,1], distributions [N, 4·(reg_max+1)]) → (boxes [K,4] x0 y0
    x1 y1 in network-input pixels, scores [K]), after threshold and NMS."""
    boxes, confs = [], []
    bins = np.arange(reg_max + 1)
    for stride, score, dist in zip(strides, scores, distributions):
        score = np.asarray(score, np.float32).reshape(-1)
        rows, cols = np.arange(input_hw[0] / stride), np.arange(input_hw[1] / stride)  # upstream: ceil rows
        ww, hh = np.meshgrid(cols, rows)
        centre = np.stack([ww.ravel(), hh.ravel()] * 2, 1) * stride
        if centre.shape[0] != score.shape[0]:
            raise fp.FlashPortraitError(f"face_det.onnx stride {stride}: {score.shape[0]} scores for "
                                        f"{centre.shape[0]} anchor points of a {input_hw[1]}×{input_hw[0]} input")
        logits = np.asarray(dist, np.float64).reshape(-1, reg_max + 1)
        prob = np.exp(logits - logits.max(1, keepdims=True))
        dist = ((prob / prob.sum(1, keepdims=True)) @ bins).reshape(-1, 4) * stride
        top = np.argsort(score, kind="stable")[::-1][:candidates]
        boxes.append(centre[top] + np.array([-1, -1, 1, 1]) * dist[top])
        confs.append(score[top])
    boxes, confs = np.concatenate(boxes), np.concatenate(confs)
    mask = confs > threshold
    boxes, confs = boxes[mask], confs[mask]
    keep = hard_nms(boxes, confs, iou_threshold) if len(confs) else np.zeros(0, np.int64)
    return boxes[keep], confs[keep]


class FaceDetector:
    """The release's face_det.onnx run as upstream's FaceDet."""

    def __init__(self, session, threshold: float = 0.4, iou_threshold: float = 0.3):
        self.session, self.threshold, self.iou_threshold = session, threshold, iou_threshold
        self.input_name = session.get_inputs()[0].name

    def preprocess(self, bgr: np.ndarray):
        """BGR 0..255 [H,W,3] → (input [1,3,272,160], the 3×3 resize matrix)."""
        h, w = DET_INPUT_HW
        m = resize_matrix((bgr.shape[1], bgr.shape[0]), (w, h))
        img = warp_affine(bgr, m[:2], (w, h))
        img = (img - np.array(DET_MEAN_BGR, np.float32)) / np.array(DET_STD_BGR, np.float32)
        return img.transpose(2, 0, 1)[None].astype(np.float32), m

    def detect(self, bgr: np.ndarray):
        """(boxes [K,4] in frame pixels, clipped to the frame, best first; scores [K])."""
        x, m = self.preprocess(bgr)
        outs = self.session.run(None, {self.input_name: x})
        if len(outs) != 6:
            raise fp.FlashPortraitError(f"face_det.onnx has {len(outs)} outputs; FlashPortrait's NanoDet has 6 "
                                        "(scores for strides 8/16/32, then box distributions)")
        boxes, scores = decode_detections([np.squeeze(o) for o in outs[:3]], [np.squeeze(o) for o in outs[3:]],
                                          threshold=self.threshold, iou_threshold=self.iou_threshold)
        if not len(boxes):
            return boxes.reshape(0, 4), scores
        inv = np.linalg.inv(m)
        corners = boxes[:, [0, 1, 2, 3, 0, 3, 2, 1]].reshape(-1, 2)       # warp_boxes: all four corners
        pts = apply(inv[:2], corners).reshape(-1, 4, 2)
        out = np.concatenate([pts.min(1), pts.max(1)], 1)
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, bgr.shape[1])
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, bgr.shape[0])
        return out, scores


# ---- face_landmark.onnx ----------------------------------------------------------------------------------------------
def landmarks_in_frame(session, bgr: np.ndarray, box, iterations: int = 3):
    """FaceAlignment.forward from a box: (222 points in frame pixels, euler [pitch, yaw, roll rad], prob)."""
    m = box_crop_matrix(box)
    pts = euler = prob = None
    for i in range(iterations):
        if i:
            m = points_crop_matrix(pts, math.degrees(float(euler[2])))
        crop = warp_affine(bgr, m, (LANDMARK_SIZE, LANDMARK_SIZE)) / 255.0
        crop_pts, angles, prob = fp.landmarks(session, torch.from_numpy(crop.transpose(2, 0, 1)[None]).float())
        crop_pts = crop_pts[0].double().numpy()
        (lx, ly), (rx, ry) = crop_pts[EYE_CORNERS[0]], crop_pts[EYE_CORNERS[1]]
        euler = np.array([float(angles[0, 0]), float(angles[0, 1]), math.atan2(ry - ly, rx - lx + 1e-8)])
        pts = apply(invert(m), crop_pts)
    return pts, euler, float(np.asarray(prob).reshape(-1)[0])


def pd_fgc_crop(rgb01: np.ndarray, pts: np.ndarray, size: int = 224) -> torch.Tensor:
    """pdf.warp_face_pd_fgc + image_preprocess: [3, 224, 224] RGB in −1..1, aligned on five landmarks."""
    m = umeyama(pts[list(PD_FGC_POINTS)], PD_FGC_TEMPLATE * size)
    crop = warp_affine(rgb01 * 255.0, m, (size, size), mode="bicubic").clip(0, 255)
    return torch.from_numpy(crop / 255.0 * 2 - 1).permute(2, 0, 1).float()


def _largest(boxes: np.ndarray) -> np.ndarray:
    return boxes[np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))]


@torch.no_grad()
def driving_features(frames: torch.Tensor, files: dict, device=None, batch: int = 16) -> torch.Tensor:
    """frames [N,H,W,3] 0..1 (RGB) → features [1, N, 554]. The largest detected face of each frame is tracked; a
    frame where none is found keeps the previous frame's landmarks (upstream drops such frames, which would
    break the one-feature-per-output-frame timing); frames before the first detection take its landmarks."""
    detector = FaceDetector(fp.onnx_session(files["face_det.onnx"]))
    landmark_net = fp.onnx_session(files["face_landmark.onnx"])
    fan = fp.load_fan_encoder(files["pd_fpg.pth"]).to(device or "cpu")
    points: list = []
    for frame in frames:
        rgb = frame[..., :3].float().cpu().numpy()
        bgr = rgb[..., ::-1] * 255.0
        boxes, _ = detector.detect(bgr)
        if len(boxes):
            points.append(landmarks_in_frame(landmark_net, bgr, _largest(boxes))[0])
        else:
            points.append(points[-1] if points else None)
    found = next((p for p in points if p is not None), None)
    if found is None:
        raise fp.FlashPortraitError("face_det.onnx found no face in any frame of the driving video")
    crops = [pd_fgc_crop(f[..., :3].float().cpu().numpy(), p if p is not None else found)
             for f, p in zip(frames, points)]
    out = []
    for i in range(0, len(crops), batch):
        out.append(fan(torch.stack(crops[i:i + batch]).to(device or "cpu")).float().cpu())
    return torch.cat(out)[None]
