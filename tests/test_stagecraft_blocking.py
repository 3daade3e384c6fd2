"""Stagecraft: the blocking document drives the previz animatic, boxes, camera paths, diagram and the
continuity checker."""
import copy
import json
import math
import os
import xml.dom.minidom

import numpy as np
import pytest

from vibeboard.camera.path import CameraPath
from vibeboard.shots.boxes import parse_boxes
from vibeboard.stagecraft import continuity, diagram, handoff, previz
from vibeboard.stagecraft.blocking import Blocking, BlockingError, project

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = json.load(open(os.path.join(ROOT, "workflows", "inputs", "stagecraft_blocking.json")))


def doc(**changes):
    d = copy.deepcopy(SAMPLE)
    d.update(changes)
    return d


def test_lens_gives_field_of_view_and_pixel_focal_length():
    b = Blocking.parse(SAMPLE)
    assert b.hfov("B") == pytest.approx(math.degrees(2 * math.atan(36 / 100)))
    fx, fy, cx, cy = b.intrinsics("B")
    assert fx == pytest.approx(320 * 50 / 36) and (cx, cy) == (159.5, 89.5)


def test_animatic_mp4_has_the_documents_frame_count_and_fps(tmp_path):
    from vibeboard.media.video import probe_video

    summary = previz.write_animatic(SAMPLE, str(tmp_path / "animatic.mp4"), width=160, height=90)
    info = probe_video(str(tmp_path / "animatic.mp4"))
    assert info.frame_count == 24 + 12 + 12 == summary["frames"]
    assert float(info.frame_rate) == pytest.approx(12.0)
    assert [s["hfov_deg"] for s in summary["shots"]] == pytest.approx([73.74, 39.60, 39.60], abs=0.01)


def test_rendered_actor_lands_where_the_lens_projects_it():
    b = Blocking.parse(SAMPLE)
    frames, ids = previz.render_shot(b, "1", width=320, height=180)
    for frame_index in (0, 23):
        f = b.shot_frames("1")[frame_index]
        for index, name in enumerate(b.actor_names(), start=1):
            px, z = project(b.actor_box(name, f), b.camera_c2w("A", f), b.intrinsics("A"))
            assert (z > 0).all() and (px.min(0) > 0).all() and (px.max(0) < [319, 179]).all()  # fully in frame
            ys, xs = np.nonzero(ids[frame_index] == index)
            assert abs(xs.min() - px[:, 0].min()) <= 2 and abs(xs.max() - px[:, 0].max()) <= 2, name
            assert abs(ys.min() - px[:, 1].min()) <= 2 and abs(ys.max() - px[:, 1].max()) <= 2, name
            centre = px.mean(0)
            assert abs(xs.mean() - centre[0]) <= 2, name


def test_checker_passes_the_clean_sequence():
    report = continuity.check(SAMPLE)
    assert report["ok"] and report["cuts"] == 2


def test_checker_flags_a_crossed_180_line_and_clears_it_when_moved_back():
    d = doc()
    d["beats"][0]["cameras"]["C"]["position"] = [1.9, 1.6, -4.4]  # behind the bob–alice line
    report = continuity.check(d)
    rules = [w["rule"] for w in report["warnings"]]
    assert "180" in rules
    w = report["warnings"][rules.index("180")]
    assert "180° rule crossed (B→C)" in w["message"] and w["beat"] == "talk" and w["cameras"] == ["B", "C"]
    d["beats"][0]["cameras"]["C"]["position"] = [1.9, 1.6, -1.6]
    assert continuity.check(d)["ok"]


def test_checker_flags_a_jump_cut():
    d = doc()
    d["cameras"].append({"name": "D", "focal_mm": 50, "sensor_mm": [36, 24]})
    d["beats"][0]["cameras"]["D"] = {"position": [2.1, 1.6, -1.9], "look_at": "bob"}  # ~10° from C
    d["shots"].append({"name": "4", "camera": "D", "beats": ["talk"], "subject": "bob"})
    report = continuity.check(d)
    assert [w["rule"] for w in report["warnings"]] == ["30"]
    assert "jump cut (C→D)" in report["warnings"][0]["message"]


def test_checker_flags_an_eyeline_mismatch():
    d = doc()
    d["beats"][2]["actors"]["bob"] = {"look_at": "alice"}
    d["beats"][0]["actors"]["alice"] = {"position": [0.8, -3.0], "look_at": "bob"}
    # shot 3 from behind bob's back on the far side flips his gaze on screen (and crosses the line)
    d["beats"][0]["cameras"]["C"] = {"position": [-3.0, 1.6, -3.3], "look_at": "bob"}
    rules = {w["rule"] for w in continuity.check(d)["warnings"]}
    assert "eyeline" in rules


def test_camera_path_and_boxes_use_the_packs_formats():
    path = handoff.shot_camera_path(SAMPLE, "1")
    assert isinstance(path, CameraPath) and len(path) == 24 and path.width == 320
    back = CameraPath.from_json(path.to_json())
    assert np.allclose(back.c2w, path.c2w) and np.allclose(back.intrinsics, path.intrinsics)
    boxes = handoff.shot_boxes(SAMPLE, "1")
    again = parse_boxes(json.dumps(boxes.to_json()), "1")
    assert [b.label for b in again.boxes] == ["bob", "alice"]
    x0, y0, x1, y1 = again.boxes[0].at(0)
    assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
    assert again.boxes[0].at(0)[0] < again.boxes[0].at(23)[0]  # bob walks to the right in the master


def test_diagram_svg_parses_and_png_is_drawn():
    xml.dom.minidom.parseString(diagram.svg(SAMPLE, 0, 256))
    img = diagram.image(SAMPLE, 0, 128)
    assert img.shape == (128, 128, 3) and (img < 250).any()


@pytest.mark.parametrize("patch, field", [
    ({"actors": []}, "actors"),
    ({"shots": [{"camera": "Z", "beats": ["talk"]}]}, "unknown camera"),
    ({"shots": [{"camera": "A", "beats": ["nope"]}]}, "beats must name"),
    ({"cameras": [{"name": "A", "focal_mm": -5}, {"name": "B"}, {"name": "C"}]}, "focal_mm"),
])
def test_bad_documents_name_the_field(patch, field):
    with pytest.raises(BlockingError, match=field):
        Blocking.parse(doc(**patch))


def test_previz_draws_an_asset_bin_glb_as_the_set(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    from vibeboard.assetbin import scene_glb

    box = trimesh.creation.box([1.0, 1.0, 1.0])
    texture = np.zeros((4, 4, 3), np.uint8)
    texture[..., 0] = 255  # a red prop
    obj = {"name": "red_box", "vertices": box.vertices, "faces": box.faces, "uv": np.zeros((8, 2)),
           "pose": scene_glb.pose_matrix(0.0, (1.6, 0.5, -5.0), 1.0), "textures": {"base_color": texture}}
    glb = scene_glb.export_glb([obj], str(tmp_path / "set.glb"))
    b = Blocking.parse(SAMPLE)
    frames, ids = previz.render_shot(b, "1", width=160, height=90, set_glb=glb)
    f = b.shot_frames("1")[0]
    px, _ = project(np.array([[1.6, 0.5, -4.5]]), b.camera_c2w("A", f), b.intrinsics("A", 160, 90))
    x, y = np.round(px[0]).astype(int)
    r, g, bl = frames[0][y, x]
    assert r > 0.3 and g < 0.1 and bl < 0.1  # the box's front face, shaded red, where the lens puts it


def test_blocking_motion_goes_into_the_asset_bin_motion_library(tmp_path):
    from vibeboard.assetbin.assetdb import AssetDB

    db = AssetDB(str(tmp_path / "a.sqlite"), str(tmp_path / "assets"))
    for name, kind, data in handoff.motions(SAMPLE):
        db.add_motion(name, kind, data)
    paths = db.motions("camera_path")
    assert [m["name"] for m in paths] == ["shot 1 camera A", "shot 2 camera B", "shot 3 camera C"]
    assert np.allclose(CameraPath.from_dict(paths[0]["data"]).c2w, handoff.shot_camera_path(SAMPLE, "1").c2w)
    bob = [m for m in db.motions("blocking_move") if m["data"]["actor"] == "bob"][0]
    assert len(bob["data"]["frames"]) == 36 and bob["data"]["frames"][23]["position"] == pytest.approx([-0.7, -3.0])
    db.close()


def test_orientation_follows_the_latest_facing_or_look_at_and_turns_during_its_beat():
    d = doc()
    d["beats"][0]["actors"]["bob"] = {"position": [-2.2, -3.0], "facing": 90}   # up the page (−z)
    d["beats"][1]["actors"]["bob"] = {"position": [-0.7, -3.0], "facing": 0}    # turns to +x while walking
    b = Blocking.parse(d)
    assert np.allclose(b.actor_facing("bob", 0), [0, 0, -1], atol=1e-9)
    halfway = b.actor_facing("bob", 12 + 5)  # 6/12 through the turn: 45°
    assert np.allclose(halfway, [math.cos(math.radians(45)), 0, -math.sin(math.radians(45))], atol=1e-9)
    assert np.allclose(b.actor_facing("bob", 23), [1, 0, 0], atol=1e-9)
    # beat 3 sets look_at: from then on bob faces alice, not before
    alice = b.actor_position("alice", 30) - b.actor_position("bob", 30)
    assert np.allclose(b.actor_facing("bob", 30), alice / np.linalg.norm(alice))
    with pytest.raises(BlockingError, match="look_at"):
        Blocking.parse(doc(beats=[{**d["beats"][0], "actors": {**d["beats"][0]["actors"],
                                                                "alice": {"position": [1, -3], "look_at": "carol"}}}]))
