"""Writes into output/: no escape through a symlinked sub-folder, no 0-byte leftovers, no cost from a huge prefix."""
import errno
import os
import time

import pytest
import torch

from vibeboard.common import runtime


@pytest.fixture
def dirs(tmp_path):
    out = tmp_path / "output"
    out.mkdir()
    runtime.set_host_dirs(output=str(out), input=str(tmp_path / "input"), temp=str(tmp_path / "temp"),
                          models=str(tmp_path / "models"))
    return tmp_path


def test_save_does_not_follow_a_symlinked_subfolder_out_of_output(dirs):
    from vibeboard_runner.core_nodes import SaveImage
    outside = dirs / "elsewhere"
    outside.mkdir()
    os.symlink(outside, dirs / "output" / "renders")
    for prefix in ("renders/shot", "renders/deeper/shot"):
        with pytest.raises(runtime.NodeInputError, match="Save Image.*filename_prefix.*symbolic link"):
            SaveImage().save_images(torch.zeros(1, 4, 4, 3), filename_prefix=prefix)
    assert list(outside.iterdir()) == []
    # a real sub-folder is still fine
    ui = SaveImage().save_images(torch.zeros(1, 4, 4, 3), filename_prefix="real/shot")["ui"]["images"][0]
    assert ui["subfolder"] == "real" and (dirs / "output" / "real" / ui["filename"]).stat().st_size > 0


def test_camera_export_refuses_a_symlinked_subfolder(dirs):
    from vibeboard.camera.nodes import VBCameraPathExport
    from vibeboard.camera.presets import preset_path
    outside = dirs / "elsewhere"
    outside.mkdir()
    os.symlink(outside, dirs / "output" / "vibeboard")
    with pytest.raises(runtime.NodeInputError, match="Camera Path Export.*filename_prefix"):
        VBCameraPathExport().export(preset_path("static", num_frames=2), "vibeboard_json", "vibeboard/camera")
    assert list(outside.iterdir()) == []


def test_failed_saves_leave_no_empty_placeholder(dirs, monkeypatch):
    from PIL import Image
    from vibeboard_runner.core_nodes import SaveImage
    from vibeboard.shots.boxes import BoxSet
    from vibeboard.shots.nodes_blocking import VBBoxesSave

    def disk_full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", disk_full)
    with pytest.raises(OSError):
        SaveImage().save_images(torch.zeros(1, 4, 4, 3), filename_prefix="full/shot")
    monkeypatch.setattr(BoxSet, "to_json", disk_full)
    with pytest.raises(OSError):
        VBBoxesSave().save(BoxSet([], "1"), "full/boxes")
    left = [p for p in (dirs / "output").rglob("*") if p.is_file()]
    assert left == [], f"failed saves left {left}"


def test_huge_filename_prefix_is_refused_cheaply(dirs):
    from vibeboard_runner.core_nodes import SaveImage
    prefix = "a" * (19 * 1024 * 1024)
    start = time.perf_counter()
    with pytest.raises(runtime.NodeInputError, match="Save Image.*filename_prefix.*limit"):
        SaveImage().save_images(torch.zeros(1, 4, 4, 3), filename_prefix=prefix)
    assert time.perf_counter() - start < 1.0
    with pytest.raises(runtime.NodeInputError, match="longer than"):  # one component past the file system limit
        SaveImage().save_images(torch.zeros(1, 4, 4, 3), filename_prefix="b" * 300)
    # regex metacharacters in the prefix are plain text
    first = SaveImage().save_images(torch.zeros(1, 2, 2, 3), filename_prefix="x(.*)+[")["ui"]["images"][0]
    second = SaveImage().save_images(torch.zeros(1, 2, 2, 3), filename_prefix="x(.*)+[")["ui"]["images"][0]
    assert (first["filename"], second["filename"]) == ("x(.*)+[_00001_.png", "x(.*)+[_00002_.png")


def test_the_executor_removes_placeholders_a_failed_node_reserved(tmp_path):
    import executor_nodes
    from vibeboard_runner.executor import Executor
    ex = Executor(executor_nodes.registry(), output_dir=tmp_path / "out", input_dir=tmp_path / "in", temp_dir=tmp_path / "t")
    result = ex.execute({"1": {"class_type": "ReserveThenFail", "inputs": {"prefix": "broken/shot"}}})
    assert result.status == "error" and "No space left" in result.error["exception_message"]
    assert [p for p in (tmp_path / "out").rglob("*") if p.is_file()] == []
