"""Refuse before allocating: an input combination over the memory budget is a NodeInputError naming the node
and input, raised before the big tensor exists (checked with tiny budgets on tiny real files)."""
import os
import time
import types

import numpy as np
import pytest
import torch
from PIL import Image

from vibeboard.common import budget, runtime


@pytest.fixture
def small_budget(tmp_path):
    runtime.set_host_dirs(output=str(tmp_path / "output"), input=str(tmp_path / "input"),
                          temp=str(tmp_path / "temp"), models=str(tmp_path / "models"))
    budget.set_budget_bytes(1 << 20)  # 1 MB
    yield tmp_path
    budget.set_budget_bytes(None)


def test_estimate_is_exact_and_the_message_names_node_and_input(small_budget):
    assert budget.estimate_bytes((81, 480, 832, 3)) == 81 * 480 * 832 * 3 * 4
    assert budget.estimate_bytes((10 ** 6, 10 ** 6, 10 ** 6)) == 4 * 10 ** 18  # no float rounding
    with pytest.raises(runtime.NodeInputError, match=r"Some Node: input 'length'.*over the memory budget of 1\.0 MB"):
        budget.check("Some Node", "length", (2, 512, 512, 3), "the clip")
    assert budget.check("Some Node", "length", (1, 64, 64, 3), "the clip") == 64 * 64 * 3 * 4


def test_budget_comes_from_the_environment(monkeypatch):
    budget.set_budget_bytes(None)
    monkeypatch.setenv("VIBEBOARD_MAX_TENSOR_MB", "2")
    assert budget.budget_bytes() == 2 << 20
    monkeypatch.delenv("VIBEBOARD_MAX_TENSOR_MB")
    assert budget.budget_bytes() > 2 << 20  # half the RAM


def test_box_masks_over_budget_are_refused_before_drawing(small_budget):
    from vibeboard.camera.nodes import VBBoxesDraw
    start = time.perf_counter()
    with pytest.raises(runtime.NodeInputError, match=r"Boxes — Draw \(VibeBoard\): input 'num_frames'.*1\.0 TB"):
        VBBoxesDraw().build('{"boxes": []}', 4096, 8192, 8192)
    assert time.perf_counter() - start < 0.5
    masks, _ = VBBoxesDraw().build('{"boxes": []}', 2, 64, 64)
    assert masks.shape == (2, 64, 64)


def test_wan_clip_size_is_checked_with_the_frame_rules(small_budget):
    from vibeboard.wan import conditioning as C
    handle = types.SimpleNamespace(scale_temporal=4, scale_spatial=8)
    with pytest.raises(runtime.NodeInputError, match="Wan Text to Video: input 'length'.*decoded clip"):
        C.check_size("Wan Text to Video", 1025, 4096, 4096, handle)
    C.check_size("Wan Text to Video", 5, 32, 32, handle)


def test_load_image_refuses_from_the_header(small_budget):
    from vibeboard_runner.core_nodes import LoadImage
    path = small_budget / "input" / "wide.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (1024, 1024)).save(path)  # compresses to a few KB, decodes to 16 MB as float RGBA
    with pytest.raises(runtime.NodeInputError, match="Load Image: input 'image'.*decoded image"):
        LoadImage().load_image("wide.png")
    (small_budget / "input" / "junk.png").write_bytes(b"not an image")
    with pytest.raises(runtime.NodeInputError, match="Load Image: input 'image'.*cannot read"):
        LoadImage().load_image("junk.png")


def test_video_load_is_refused_before_decoding(small_budget, monkeypatch):
    from vibeboard.media import video as video_io
    from vibeboard.media.nodes import VBLoadVideo
    path = small_budget / "input" / "clip.mp4"
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = torch.from_numpy(np.random.default_rng(0).random((6, 128, 128, 3), dtype=np.float32))
    video_io.write_video(str(path), frames, 8)
    decoded = []
    real_iter = video_io.iter_video_frames

    def counting(*a, **k):
        for item in real_iter(*a, **k):
            decoded.append(1)
            yield item

    monkeypatch.setattr(video_io, "iter_video_frames", counting)
    with pytest.raises(runtime.NodeInputError, match="Load Video.*frame_load_cap.*decoded frames"):
        VBLoadVideo().load("clip.mp4")
    assert decoded == []
    images = VBLoadVideo().load("clip.mp4", frame_load_cap=2, custom_width=32)[0]  # under the budget
    assert tuple(images.shape) == (2, 32, 32, 3)
