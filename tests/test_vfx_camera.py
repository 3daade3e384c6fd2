import json
import math

import numpy as np
import pytest

from vibeboard.camera import CameraPath, parse_camera_path, path_from_2d, path_from_keyframes, preset_path
from vibeboard.camera.rotations import orthonormalize, slerp_matrix, rot_y, rot_x, rot_z
from vibeboard.camera.widget_values import parse_boxes, parse_points, boxes_to_masks


def forward(path, t):
    return path.c2w[t, :3, :3] @ np.array([0.0, 0.0, 1.0])


def test_pan_right_looks_toward_plus_x_and_stays_put():
    p = preset_path("pan_right", 17)
    assert np.allclose(p.c2w[0], np.eye(4))
    f = forward(p, -1)
    assert f[0] > 0.4 and abs(f[1]) < 1e-9
    assert math.isclose(math.degrees(math.atan2(f[0], f[2])), 30.0, abs_tol=1e-6)
    assert np.allclose(p.positions, 0)
    assert forward(preset_path("pan_left", 17), -1)[0] < -0.4


def test_tilt_up_looks_up_negative_y_and_roll_right_dips_right_side():
    assert forward(preset_path("tilt_up", 9), -1)[1] < -0.3
    assert forward(preset_path("tilt_down", 9), -1)[1] > 0.3
    right_axis = preset_path("roll_right", 9).c2w[-1, :3, 0]
    assert right_axis[1] > 0.2  # the camera's x axis now points partly down (+y)


def test_dolly_moves_along_its_forward_axis():
    p = preset_path("dolly_in", 21, subject_distance=2.0)
    move = p.positions[-1] - p.positions[0]
    assert np.allclose(move / np.linalg.norm(move), forward(p, 0))
    assert math.isclose(np.linalg.norm(move), 1.0)  # 0.5 × subject distance
    out = preset_path("dolly_out", 21)
    assert (out.positions[-1] - out.positions[0]) @ forward(out, 0) < 0
    # monotone with easing
    assert np.all(np.diff(p.positions[:, 2]) >= -1e-12)


def test_truck_pedestal_orbit_zoom():
    assert preset_path("truck_right", 9).positions[-1, 0] > 0
    assert preset_path("pedestal_up", 9).positions[-1, 1] < 0
    orbit = preset_path("orbit_right", 33, subject_distance=3.0)
    pivot = np.array([0, 0, 3.0])
    for t in (0, 16, 32):  # keeps distance and faces the subject
        to_subject = pivot - orbit.positions[t]
        assert math.isclose(np.linalg.norm(to_subject), 3.0, rel_tol=1e-9)
        assert np.allclose(to_subject / 3.0, forward(orbit, t))
    assert orbit.positions[-1, 0] > 0
    zoom = preset_path("zoom_in", 9)
    assert math.isclose(zoom.intrinsics[-1, 0] / zoom.intrinsics[0, 0], 1.5)
    assert np.allclose(zoom.c2w, np.eye(4))


def test_shake_is_seeded_small_and_starts_at_identity():
    a = preset_path("handheld", 33, seed=3)
    b = preset_path("handheld", 33, seed=3)
    c = preset_path("handheld", 33, seed=4)
    assert np.allclose(a.c2w, b.c2w) and not np.allclose(a.c2w, c.c2w)
    assert np.allclose(a.c2w[0], np.eye(4))
    angles = [math.degrees(math.acos(np.clip((np.trace(r) - 1) / 2, -1, 1))) for r in a.rotations]
    assert 0 < max(angles) < 3


def test_json_round_trip_and_formats():
    p = preset_path("orbit_left", 13, shake=0.5, seed=1)
    q = CameraPath.from_json(p.to_json())
    assert np.allclose(p.c2w, q.c2w) and np.allclose(p.intrinsics, q.intrinsics)
    r = CameraPath.from_realestate10k(p.to_realestate10k(), p.width, p.height)
    assert np.allclose(p.c2w, r.c2w, atol=1e-9) and np.allclose(p.intrinsics, r.intrinsics)
    s = CameraPath.from_comfy_wan_poses(p.to_comfy_wan_poses(), p.width, p.height)
    assert np.allclose(p.c2w, s.c2w, atol=1e-9) and np.allclose(p.intrinsics, s.intrinsics)
    for text in (p.to_json(), p.to_realestate10k(), json.dumps(p.to_comfy_wan_poses())):
        assert np.allclose(parse_camera_path(text, p.width, p.height).c2w, p.c2w, atol=1e-9)
    with pytest.raises(ValueError):
        CameraPath.from_comfy_wan_poses([[1, 2, 3]], 8, 8)


def test_comfy_pose_entries_from_wancameraembedding_layout():
    # a ComfyUI 'Pan Right' entry: c2w translation along +x, normalised intrinsics 0.5
    entry = [0, 0.5, 0.5, 0.5, 0.5, 0, 0] + [1, 0, 0, 0.75, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]
    p = CameraPath.from_comfy_wan_poses([entry], 832, 480)
    assert math.isclose(p.positions[0, 0], 0.75)
    assert math.isclose(p.intrinsics[0, 0], 416.0) and math.isclose(p.intrinsics[0, 2], 415.5)


def test_slerp_keeps_rotations_orthonormal():
    r0 = rot_y(0.3) @ rot_x(-1.1)
    r1 = rot_z(2.5) @ rot_y(-0.7)
    for u in np.linspace(0, 1, 11):
        r = slerp_matrix(r0, r1, u)
        assert np.allclose(r @ r.T, np.eye(3), atol=1e-12) and math.isclose(np.linalg.det(r), 1.0)
    assert np.allclose(slerp_matrix(r0, r1, 0), r0) and np.allclose(slerp_matrix(r0, r1, 1), r1)
    noisy = r0 + 1e-3 * np.random.default_rng(0).normal(size=(3, 3))
    assert np.allclose(orthonormalize(noisy) @ orthonormalize(noisy).T, np.eye(3))


def test_keyframes_interpolate():
    p = path_from_keyframes([{"frame": 0}, {"frame": 10, "yaw": 40, "position": [1, 0, 0], "zoom": 2}], 11)
    f = forward(p, 5)
    assert math.isclose(math.degrees(math.atan2(f[0], f[2])), 20.0, abs_tol=1e-6)
    assert np.allclose(p.positions[5], [0.5, 0, 0])
    assert math.isclose(p.intrinsics[10, 0] / p.intrinsics[0, 0], 2.0)
    for r in p.rotations:
        assert np.allclose(r @ r.T, np.eye(3), atol=1e-12)


def test_2d_path_pan_tilt_puts_drawn_point_on_axis():
    p = path_from_2d([[0.5, 0.5], [0.8, 0.3]], 9, 832, 480, mode="pan_tilt", easing="linear")
    k = p.K()[0]
    # the last camera's optical axis is the first camera's ray through the displaced centre
    target = np.array([k[0, 2] + 0.3 * 832, k[1, 2] - 0.2 * 480, 1.0])
    ray = np.linalg.inv(k) @ target
    assert np.allclose(forward(p, -1), ray / np.linalg.norm(ray))
    assert abs(p.c2w[-1, :3, 0][1]) < 1e-12  # no roll: x axis stays horizontal
    t = path_from_2d([[0.5, 0.5], [0.6, 0.5]], 5, 832, 480, mode="truck", subject_distance=2.0)
    # content at distance 2 moves by exactly 0.1 of the width
    assert math.isclose(t.positions[-1, 0] * k[0, 0] / 2.0, 0.1 * 832)


def test_widget_values_and_masks():
    assert parse_points('{"points": [[0.1, 0.2], {"x": 0.3, "y": 0.4}]}') == [[0.1, 0.2], [0.3, 0.4]]
    with pytest.raises(ValueError):
        parse_points("[[120, 40]]")  # pixels, not normalised
    boxes = parse_boxes('{"boxes": [{"x0": 0.5, "y0": 0.5, "x1": 0.0, "y1": 0.0, "label": "a", "frame_end": 1}]}')
    assert boxes[0]["x0"] == 0.0 and boxes[0]["x1"] == 0.5
    m = boxes_to_masks(boxes, 3, 4, 4)
    assert m[0, :2, :2].sum() == 4 and m[0].sum() == 4 and m[2].sum() == 0


def test_wan_camera_embedding_shape_and_static_rays():
    p = preset_path("static", 9, 32, 16)
    e = p.wan_camera_embedding()
    assert tuple(e.shape) == (1, 24, 3, 16, 32)
    assert float(e[:, 0:12].abs().max()) == 0.0  # o × d = 0 at the origin (4 sub-frames × 3)
    assert float(e[:, 12:].abs().min()) > 0  # ray directions


def test_camera_nodes_convert_and_report_bad_input(tmp_path):
    from vibeboard.common import runtime
    from vibeboard.common.runtime import NodeInputError
    from vibeboard.camera.nodes import (VBCameraKeyframes, VBCameraPathExport, VBCameraPathImport, VBCameraPreset,
                                        VBCameraToWanEmbedding)

    runtime.set_host_dirs(output=str(tmp_path / "out"), input=str(tmp_path / "in"))
    first, _ = VBCameraPreset().build("pan_right", 9, 64, 32, 60.0, 1.0, "linear", 1.0, 0.0, 0)
    chained, text = VBCameraPreset().build("dolly_in", 5, 64, 32, 60.0, 1.0, "linear", 1.0, 0.0, 0, previous=first)
    assert len(chained) == 13 and np.allclose(chained.c2w[8], first.c2w[8])
    assert chained.positions[-1] @ forward(first, 8) > 0.4  # the dolly goes along the panned direction
    out = VBCameraPathExport().export(chained, "comfy_wan_poses", "cams/test")
    f = out["ui"]["files"][0]
    saved = (tmp_path / "out" / f["subfolder"] / f["filename"]).read_text()
    (tmp_path / "in").mkdir(exist_ok=True)
    (tmp_path / "in" / "poses.json").write_text(saved)
    (loaded,) = VBCameraPathImport().load("", "poses.json", 64, 32, 16.0, True)
    assert np.allclose(loaded.c2w, chained.c2w, atol=1e-9)
    emb, w, h, n = VBCameraToWanEmbedding().embed(loaded)
    assert tuple(emb.shape) == (1, 24, 4, 32, 64) and (w, h, n) == (64, 32, 13)
    with pytest.raises(NodeInputError, match=r"Camera Keyframes \(VibeBoard\): input 'keyframes'"):
        VBCameraKeyframes().build("[{\"frame\": 0}, {\"frame\": 0}]", 5, 64, 32, 60.0, "linear")
    with pytest.raises(NodeInputError, match=r"Camera Path Import \(VibeBoard\): input 'file'"):
        VBCameraPathImport().load("", "missing.txt", 64, 32, 16.0, True)


INFCAM_SAMPLE = {  # two frames of InfCam's camera_extrinsics_10types.json layout (cam01: pan, cam05: dolly)
    "frame0": {"cam01": "[-0.17258 0 0.984996 0] [0.984996 0 0.17258 0] [-0 -1 -0 0] [0 0 0 1] ",
               "cam05": "[0 0 1 0] [1 0 0 0] [-0 -1 -0 0] [0 0 -99.379997 1] "},
    "frame1": {"cam01": "[-0.168307 0 0.985735 0] [0.985735 0 0.168307 0] [-0 -1 -0 0] [0 0 0 1] ",
               "cam05": "[0 0 1 0] [1 0 0 0] [-0 -1 -0 0] [0 0 -96.900002 1] "},
}


def test_infcam_trajectory_json_converts_to_opencv_c2w():
    dolly = parse_camera_path(json.dumps(INFCAM_SAMPLE), 832, 480, cam=5)
    assert np.allclose(dolly.rotations[0], np.eye(3))
    assert np.allclose(dolly.positions[:, 2], [-0.9938, -0.969], atol=1e-4)  # moving forward along +z
    pan = CameraPath.from_infcam_json(INFCAM_SAMPLE, 1, 832, 480)
    f = forward(pan, 0)
    assert math.isclose(math.degrees(math.atan2(f[0], f[2])), -9.94, abs_tol=0.05)  # looks 10° to the left
    assert abs(f[1]) < 1e-9 and np.allclose(pan.positions, 0)
    with pytest.raises(ValueError, match="cam07"):
        CameraPath.from_infcam_json(INFCAM_SAMPLE, 7, 832, 480)
    ext, _ = pan.infcam_inputs(temporal_stride=1)
    assert np.allclose(ext[0].reshape(3, 4)[:, :3], pan.rotations[0])  # not re-based: relative to the source
