"""Review-pack: model folders load safetensors only; a folder holding only a pickled checkpoint is refused."""
import os

import pytest
import torch

from vibeboard.models import loaders, tiny


def _pickled_folder(model, folder):
    model.config.save_pretrained(folder)
    torch.save(model.state_dict(), os.path.join(folder, "pytorch_model.bin"))
    return folder


def test_umt5_folder_with_only_a_pickle_is_refused(tmp_path):
    folder = _pickled_folder(tiny.build_umt5(0), str(tmp_path / "te"))
    with pytest.raises(OSError):
        loaders.load_umt5(folder, "fp32")


def test_clip_vision_folder_with_only_a_pickle_is_refused(tmp_path):
    folder = _pickled_folder(tiny.build_clip(0), str(tmp_path / "clip"))
    with pytest.raises(OSError):
        loaders.load_clip_vision(folder, "fp32")


def test_umt5_folder_with_safetensors_still_loads(tmp_path):
    model = tiny.build_umt5(0)
    model.save_pretrained(str(tmp_path / "te"))
    loaded = loaders.load_umt5(str(tmp_path / "te"), "fp32")
    assert isinstance(loaded, torch.nn.Module)
