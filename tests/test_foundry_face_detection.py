"""FlashPortrait's face models decoded as upstream: face_det.onnx (NanoDet: keep-ratio 160×272 input, per-stride
scores + 8-bin box distributions, threshold, hard NMS, boxes back to the frame) on a tiny ONNX model with planted
detections, then the 222-point landmark crops from the detected box, then the PD-FGC alignment crop."""
import math

import numpy as np
import pytest
import torch

from vibeboard.foundry import face_features as ff
from vibeboard.foundry import flashportrait as fp

import foundry_face_models as fm

pytest.importorskip("onnxruntime")

# (stride, row, col, score, sides in stride units): A and B overlap (IoU 0.71, B suppressed), C stands alone,
# D is under the 0.4 threshold.
PLANTED = [(8, 17, 10, 0.9, (3, 4, 3, 4)), (8, 17, 11, 0.7, (3, 4, 3, 4)), (16, 3, 2, 0.6, (1, 1, 2, 2)),
           (32, 8, 4, 0.3, (1, 1, 1, 0))]


def test_heads_decode_to_the_planted_boxes_with_threshold_and_nms():
    scores, dists = fm.planted_outputs(PLANTED)
    boxes, conf = ff.decode_detections([np.squeeze(s) for s in scores], [np.squeeze(d) for d in dists])
    # anchor (col·stride, row·stride) ± sides·stride
    np.testing.assert_allclose(boxes, [[56, 104, 104, 168], [16, 32, 64, 80]], atol=1e-6)
    np.testing.assert_allclose(conf, [0.9, 0.6], atol=1e-6)


def test_distribution_is_a_softmax_expectation_over_bins():
    scores, dists = fm.planted_outputs([(8, 0, 0, 0.9, (2, 2, 2, 2))])
    d = np.squeeze(dists[0]).copy()
    d[0, :8] = 0.0
    d[0, [2, 3]] = 30.0                     # left side: half bin 2, half bin 3 → 2.5 · 8 px
    boxes, _ = ff.decode_detections([np.squeeze(s) for s in scores], [d] + [np.squeeze(x) for x in dists[1:]])
    np.testing.assert_allclose(boxes[0], [-20, -16, 16, 16], atol=1e-5)


def test_hard_nms_keeps_the_best_of_each_cluster():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9]], np.float64)
    keep = ff.hard_nms(boxes, np.array([0.5, 0.9, 0.4, 0.8]), iou_threshold=0.3)
    assert keep.tolist() == [1, 2]


def test_onnx_detector_maps_boxes_back_to_the_frame(tmp_path):
    session = fp.onnx_session(fm.write_face_det(tmp_path / "face_det.onnx", PLANTED))
    det = ff.FaceDetector(session)
    frame = np.zeros((300, 200, 3), np.float32)          # h 300, w 200 → scaled 0.8, padded 16 px top and bottom
    x, m = det.preprocess(frame)
    assert x.shape == (1, 3, 272, 160)
    np.testing.assert_allclose(m, [[0.8, 0, 0], [0, 0.8, 16], [0, 0, 1]], atol=1e-9)
    # normalised with the BGR mean/std: black pixels inside the frame read −mean/std
    np.testing.assert_allclose(x[0, :, 136, 80], -np.array(ff.DET_MEAN_BGR) / np.array(ff.DET_STD_BGR), atol=1e-5)
    boxes, scores = det.detect(frame)
    np.testing.assert_allclose(boxes, [[70, 110, 130, 190], [20, 20, 80, 80]], atol=1e-4)
    np.testing.assert_allclose(scores, [0.9, 0.6], atol=1e-6)


def test_warp_affine_follows_opencv_semantics():
    img = np.arange(5 * 6 * 1, dtype=np.float32).reshape(5, 6, 1)
    shift = np.array([[1.0, 0, 2], [0, 1.0, 1]])             # dst(x, y) = src(x − 2, y − 1)
    out = ff.warp_affine(img, shift, (6, 5))
    np.testing.assert_allclose(out[1:, 2:, 0], img[:-1, :-2, 0], atol=1e-4)
    assert np.abs(out[0]).max() < 1e-4 and np.abs(out[:, :2]).max() < 1e-4  # outside the source: black
    m = ff.rotation_matrix((3.0, 2.0), 90.0, 2.0)            # cv2.getRotationMatrix2D((3, 2), 90, 2)
    np.testing.assert_allclose(m, [[0, 2, -1], [-2, 0, 8]], atol=1e-9)


def test_landmarks_come_from_a_crop_of_the_detected_box(tmp_path):
    session = fp.onnx_session(fm.write_face_landmark(tmp_path / "face_landmark.onnx"))
    box = np.array([70.0, 110.0, 130.0, 190.0])
    frame = np.zeros((300, 200, 3), np.float32)
    pts, euler, prob = ff.landmarks_in_frame(session, frame, box, iterations=1)
    # the box's longer side (80 px) fills 85 % of the 128² crop, centred: crop point p ↔ centre + (p − 64)/scale
    scale = 128 / 80 * 0.85
    expect = np.array([100.0, 150.0]) + (fm.face_points() * 128 - 64) / scale
    np.testing.assert_allclose(pts, expect, atol=1e-4)
    assert euler[2] == pytest.approx(0.0, abs=1e-6) and prob == pytest.approx(0.98)
    # the next pass re-crops around those points (eye line level: no rotation), their extent filling 85 %
    pts2, _, _ = ff.landmarks_in_frame(session, frame, box, iterations=2)
    s2 = 128 * 0.85 / max(np.ptp(pts[:, 0]), np.ptp(pts[:, 1]))
    np.testing.assert_allclose(pts2, (pts.min(0) + pts.max(0)) / 2 + (fm.face_points() * 128 - 64) / s2, atol=1e-4)


def test_pd_fgc_alignment_is_the_least_squares_similarity():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    a = math.radians(20)
    r = 1.7 * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    m = ff.umeyama(src, src @ r.T + [5.0, -3.0])
    np.testing.assert_allclose(m, np.hstack([r, [[5.0], [-3.0]]]), atol=1e-9)
    pts = fm.face_points() * 128
    crop = ff.pd_fgc_crop(np.full((128, 128, 3), 0.5, np.float32), pts)
    assert crop.shape == (3, 224, 224) and float(crop.min()) >= -1 and float(crop.max()) <= 1


def test_driving_features_track_the_largest_face_and_refuse_a_video_without_one(tmp_path):
    files = {"face_det.onnx": fm.write_face_det(tmp_path / "face_det.onnx", PLANTED),
             "face_landmark.onnx": fm.write_face_landmark(tmp_path / "face_landmark.onnx")}
    torch.save(fp.FanEncoder().state_dict(), str(tmp_path / "pd_fpg.pth"))
    files["pd_fpg.pth"] = str(tmp_path / "pd_fpg.pth")
    feats = ff.driving_features(torch.rand(2, 300, 200, 3), files)
    assert feats.shape == (1, 2, 554) and torch.isfinite(feats).all()
    files["face_det.onnx"] = fm.write_face_det(tmp_path / "no_face.onnx", [])
    with pytest.raises(fp.FlashPortraitError, match="no face"):
        ff.driving_features(torch.rand(1, 300, 200, 3), files)
