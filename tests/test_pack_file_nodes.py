"""Review-pack: savers stay inside the output folder and name the node in errors; file readers re-run on change."""
import os

import pytest
import torch

from vibeboard.common import runtime
from vibeboard.common.runtime import NodeInputError


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    folders = {k: str(tmp_path / k) for k in ("output", "input", "temp", "models")}
    monkeypatch.setattr(runtime, "_dirs", dict(folders))
    return folders


@pytest.mark.parametrize("shot_name", ["sc1/take2", "../../../../escape", "a\\b"])
def test_focus_inspect_report_name_stays_one_file_in_dailies(dirs, shot_name):
    from vibeboard.vfx.nodes import VBFocusInspect

    out = VBFocusInspect().run(torch.rand(1, 16, 16, 3), shot_name, 8, 2.0, True)
    entry = out["ui"]["files"][0]
    assert entry["subfolder"] == os.path.join("vibeboard", "dailies")
    assert entry["filename"].startswith("focus_")
    assert os.path.isfile(os.path.join(dirs["output"], entry["subfolder"], entry["filename"]))


def _path():
    from vibeboard.camera.nodes import VBCameraPreset
    return VBCameraPreset().build("pan_right", 3, 32, 32, 60.0, 1.0, "linear", 1.0, 0.0, 0)[0]


def test_camera_export_bad_prefix_names_the_node(dirs):
    from vibeboard.camera.nodes import VBCameraPathExport

    with pytest.raises(NodeInputError) as err:
        VBCameraPathExport().export(_path(), "vibeboard_json", "../outside")
    assert err.value.node == "Camera Path Export (VibeBoard)" and err.value.input_name == "filename_prefix"


def test_boxes_save_bad_prefix_names_the_node(dirs):
    from vibeboard.shots import boxes as boxes_mod
    from vibeboard.shots.nodes_blocking import VBBoxesSave

    boxset = boxes_mod.parse_boxes('{"boxes": [{"x0": 0.1, "y0": 0.1, "x1": 0.5, "y1": 0.5, "prompt": "a"}]}', "")
    with pytest.raises(NodeInputError) as err:
        VBBoxesSave().save(boxset, "../outside")
    assert err.value.node == "Boxes Save (VibeBoard)" and err.value.input_name == "filename_prefix"


def test_camera_import_reruns_when_its_file_changes(dirs):
    from vibeboard.camera.nodes import VBCameraPathExport, VBCameraPathImport

    os.makedirs(dirs["input"], exist_ok=True)
    target = os.path.join(dirs["input"], "move.json")
    with open(target, "w") as fh:
        fh.write(VBCameraPathExport().export(_path(), "vibeboard_json", "cam")["result"][0])
    args = dict(text="", file="move.json", width=32, height=32, fps=16.0, relative_to_first=True)
    first = VBCameraPathImport.IS_CHANGED(**args)
    with open(target, "a") as fh:
        fh.write("\n")
    assert VBCameraPathImport.IS_CHANGED(**args) != first


def test_camera_import_unreadable_file_is_a_node_input_error(dirs):
    from vibeboard.camera.nodes import VBCameraPathImport

    os.makedirs(dirs["input"], exist_ok=True)
    with open(os.path.join(dirs["input"], "bad.txt"), "wb") as fh:
        fh.write(b"\xff\xfe\x00garbage")
    with pytest.raises(NodeInputError) as err:
        VBCameraPathImport().load("", "bad.txt", 32, 32, 16.0, True)
    assert err.value.input_name == "file"


def test_focus_inspect_accepts_a_2d_depth_mask(dirs):
    from vibeboard.vfx.nodes import VBFocusInspect

    images = torch.rand(2, 16, 16, 3)
    flat = VBFocusInspect().run(images, "s", 8, 2.0, False, depth=torch.rand(16, 16) + 1)
    batched = VBFocusInspect().run(images, "s", 8, 2.0, False, depth=(torch.rand(16, 16) + 1)[None])
    assert flat["result"][0].shape == batched["result"][0].shape == (2, 16, 16)


def test_focus_inspect_accepts_a_2d_subject_mask_of_another_size(dirs):
    from vibeboard.vfx.nodes import VBFocusInspect

    images = torch.rand(2, 16, 16, 3)
    out = VBFocusInspect().run(images, "s", 8, 2.0, False, subject_mask=torch.ones(8, 8))
    assert out["result"][0].shape == (2, 16, 16)
