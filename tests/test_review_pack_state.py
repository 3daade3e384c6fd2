"""Review-pack: nodes must not change their inputs (ComfyUI caches outputs and shares them between runs)."""
import os

import numpy as np
import pytest
import torch

from vibeboard.common import runtime


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    folders = {k: str(tmp_path / k) for k in ("output", "input", "temp", "models")}
    monkeypatch.setattr(runtime, "_dirs", dict(folders))
    return folders


def test_story_memory_save_elsewhere_keeps_the_input_bank_home(dirs):
    from vibeboard.shots.nodes_story import VBStoryMemoryLoad, VBStoryMemorySave

    bank, _, _ = VBStoryMemoryLoad().load("story/a", 8, 3, True, reference_images=torch.rand(1, 8, 8, 3))
    home = bank.path
    VBStoryMemorySave().save(bank, memory_dir="story/backup")
    assert os.path.isfile(os.path.join(dirs["output"], "story", "backup", "manifest.json"))
    # the (cached) loader output must still point at its own folder: later updates save there, not to the backup
    assert bank.path == home


def test_location_memory_save_elsewhere_keeps_the_input_home(dirs):
    from vibeboard.shots.nodes_location import VBLocationMemoryLoad, VBLocationMemorySave

    mem, _ = VBLocationMemoryLoad().load("sets/main", 0.0, True)
    home = mem.path
    VBLocationMemorySave().save(mem, location_dir="sets/copy")
    assert os.path.isfile(os.path.join(dirs["output"], "sets", "copy", "point_cloud.ply"))
    assert mem.path == home


def test_location_memory_frames_file_is_replaced_atomically(tmp_path, monkeypatch):
    import safetensors.torch as st

    from vibeboard.shots import spatia

    mem = spatia.LocationMemory(path=str(tmp_path))
    mem.cloud = spatia.PointCloud(np.zeros((1, 3), np.float32), np.zeros((1, 3), np.uint8))
    mem.frames = [torch.full((4, 4, 3), 0.5)]
    mem.cameras = []
    mem.save(str(tmp_path))
    before = open(tmp_path / "frames.safetensors", "rb").read()

    def broken_save_file(tensors, path, metadata=None):
        with open(path, "wb") as fh:
            fh.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(st, "save_file", broken_save_file)
    mem.frames = [torch.zeros(4, 4, 3)]
    with pytest.raises(OSError):
        mem.save(str(tmp_path))
    assert open(tmp_path / "frames.safetensors", "rb").read() == before
