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


def _bank_with_one_cached_latent(vae, h, w):
    from vibeboard.shots import storymem
    from vibeboard.shots.memory_bank import MemoryEntry, StoryMemoryBank

    bank = StoryMemoryBank()
    bank.add(MemoryEntry(image=torch.rand(h, w, 3), shot=1, frame=0), dedup=False)
    storymem.encode_memory(vae, bank, h, w)           # caches entry 0's latent
    bank.add(MemoryEntry(image=torch.rand(h, w, 3), shot=2, frame=0), dedup=False)
    return bank


def test_story_memory_latent_cache_lives_on_the_host():
    from vibeboard.shots import storymem, tiny_models

    from vibeboard.wan.handle import WanHandle
    vae = WanHandle.from_modules(vae=tiny_models.wan_vae(seed=0), variant="i2v")
    bank = _bank_with_one_cached_latent(vae, 16, 16)
    out = storymem.encode_memory(vae, bank, 16, 16)
    assert out.shape[2] == 2
    assert all(e.latent.device.type == "cpu" for e in bank.entries)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU: a cached (host) latent next to a fresh one")
def test_story_memory_mixes_disk_cached_and_fresh_latents_on_gpu(tmp_path):
    from vibeboard.shots import storymem, tiny_models
    from vibeboard.shots.memory_bank import StoryMemoryBank

    from vibeboard.models.vram import VramManager
    from vibeboard.wan.handle import WanHandle
    vae = WanHandle.from_modules(VramManager(device="cuda"), vae=tiny_models.wan_vae(seed=0), variant="i2v")
    bank = _bank_with_one_cached_latent(vae, 16, 16)
    bank.entries = bank.entries[:1]
    bank.save(str(tmp_path))
    loaded = StoryMemoryBank.load(str(tmp_path))       # latent read back on the CPU
    from vibeboard.shots.memory_bank import MemoryEntry
    loaded.add(MemoryEntry(image=torch.rand(16, 16, 3), shot=2, frame=0), dedup=False)
    out = storymem.encode_memory(vae, loaded, 16, 16)  # was: torch.stack of cpu + cuda tensors
    assert out.shape[2] == 2
    assert all(e.latent.device.type == "cpu" for e in loaded.entries)
