"""The media nodes inside the embedded executor: load → save video + audio, caching, IS_CHANGED, validation."""
import os

import av
import numpy as np
import pytest
import torch

from vibeboard_runner.executor import Executor
from vibeboard_runner.registry import NodeRegistry
from vibeboard.media import video as video_io


def write_clip(path, frames=8, freq=330.0):
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 48), indexing="ij")
    clip = torch.stack([torch.stack([(xx + i / frames) % 1.0, yy, 0.5 * torch.ones_like(xx)], -1)
                        for i in range(frames)])
    t = np.arange(int(44100 * frames / 24)) / 44100
    wave = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)[None]
    video_io.write_video(str(path), clip, 24, crf=10, preset="ultrafast", audio=(wave, 44100))


def prompt(video="clip.mp4"):
    return {
        "1": {"class_type": "VBLoadVideo",
              "inputs": {"video": video, "frame_load_cap": 0, "skip_first_frames": 0, "select_every_nth": 1,
                         "force_rate": 0.0, "custom_width": 0, "custom_height": 0, "start_time": 0.0}},
        "2": {"class_type": "VBSaveVideo",
              "inputs": {"images": ["1", 0], "fps": ["1", 2], "filename_prefix": "vibeboard/copy", "crf": 19,
                         "preset": "ultrafast", "audio": ["1", 1]}},
        "3": {"class_type": "VBSaveAudio",
              "inputs": {"audio": ["1", 1], "filename_prefix": "vibeboard/sound", "format": "flac"}},
    }


@pytest.fixture
def ex(tmp_path):
    (tmp_path / "in").mkdir()
    return Executor(NodeRegistry.default(), output_dir=tmp_path / "out", input_dir=tmp_path / "in",
                    temp_dir=tmp_path / "temp")


def test_load_save_round_trip_caching_and_is_changed(ex, tmp_path):
    write_clip(tmp_path / "in" / "clip.mp4")
    result = ex.execute(prompt())
    assert result.status == "success", result.error
    entry = result.outputs["2"]["images"][0]
    assert entry["type"] == "output" and entry["format"] == "video/mp4"
    saved = tmp_path / "out" / entry["subfolder"] / entry["filename"]
    with av.open(str(saved)) as container:
        assert container.streams.video[0].frames == 8
        assert container.streams.audio[0].codec_context.name == "aac"
    sound = result.outputs["3"]["audio"][0]
    assert (tmp_path / "out" / sound["subfolder"] / sound["filename"]).stat().st_size > 0

    again = ex.execute(prompt())
    assert again.status == "success" and again.executed == []

    write_clip(tmp_path / "in" / "clip.mp4", frames=4)  # new content under the same name
    third = ex.execute(prompt())
    assert third.status == "success" and "1" in third.executed
    entry = third.outputs["2"]["images"][0]
    with av.open(str(tmp_path / "out" / entry["subfolder"] / entry["filename"])) as container:
        assert container.streams.video[0].frames == 4


@pytest.mark.parametrize("name, words", [("missing.mp4", ["not found", "missing.mp4"]),
                                         ("../out/x.mp4", ["'..'"]),
                                         ("/etc/passwd", ["absolute"])])
def test_bad_video_names_fail_validation_with_a_clear_message(ex, name, words):
    result = ex.execute(prompt(name))
    assert result.status == "invalid"
    details = " ".join(err["details"] for err in result.node_errors["1"]["errors"])
    assert "Load Video (VibeBoard)" in details and "'video'" in details
    for word in words:
        assert word in details
    assert not os.path.exists(os.path.join(ex.dirs["output"], "vibeboard"))


def test_ui_format_workflow_with_the_upload_slot(ex, tmp_path):
    """A graph saved by the ComfyUI frontend: the upload button adds "image" after the `video` value."""
    from vibeboard_runner.workflow import ui_to_api

    write_clip(tmp_path / "in" / "clip.mp4")
    workflow = {
        "last_node_id": 2, "last_link_id": 2, "version": 0.4,
        "nodes": [
            {"id": 1, "type": "VBLoadVideo", "mode": 0, "inputs": [],
             "outputs": [{"name": "images", "type": "IMAGE", "links": [1]},
                         {"name": "audio", "type": "AUDIO", "links": [2]},
                         {"name": "fps", "type": "FLOAT", "links": []},
                         {"name": "frame_count", "type": "INT", "links": []}],
             "widgets_values": ["clip.mp4", "image", 3, 1, 1, 0, 24, 0, 0, ""]},
            {"id": 2, "type": "VBSaveVideo", "mode": 0,
             "inputs": [{"name": "images", "type": "IMAGE", "link": 1},
                        {"name": "audio", "type": "AUDIO", "link": 2}],
             "outputs": [{"name": "path", "type": "STRING", "links": []}],
             "widgets_values": [12, "ui/clip", 23, "veryfast"]},
        ],
        "links": [[1, 1, 0, 2, 0, "IMAGE"], [2, 1, 1, 2, 1, "AUDIO"]],
    }
    api = ui_to_api(workflow, ex.registry)
    assert api["1"]["inputs"]["video"] == "clip.mp4" and api["1"]["inputs"]["frame_load_cap"] == 3
    assert api["1"]["inputs"]["custom_width"] == 24 and api["2"]["inputs"]["fps"] == 12
    result = ex.execute(api)
    assert result.status == "success", result.error
    entry = result.outputs["2"]["images"][0]
    with av.open(str(tmp_path / "out" / entry["subfolder"] / entry["filename"])) as container:
        stream = container.streams.video[0]
        assert (stream.frames, stream.codec_context.width, stream.codec_context.height) == (3, 24, 16)
        assert stream.average_rate == 12
        assert float(container.streams.audio[0].duration * container.streams.audio[0].time_base) == \
            pytest.approx(0.25, abs=1e-3)
