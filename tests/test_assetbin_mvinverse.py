"""MVInverse: the published HubMixin layout is checked, `.pt` is never fully unpickled, the outputs become PBR
maps, and what it makes is non-commercial."""
import json
import os

import pytest
import torch
from safetensors.torch import save_file

from vibeboard.assetbin import mvinverse
from vibeboard.assetbin.licences import most_restrictive


def test_layout_check_reads_config_and_safetensors(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        mvinverse.check_layout(str(tmp_path))
    json.dump({"dec_embed_dim": 32, "dec_depth": 2}, open(tmp_path / "config.json", "w"))
    save_file({"decoder.0.weight": torch.zeros(2, 2)}, str(tmp_path / "model.safetensors"))
    info = mvinverse.check_layout(str(tmp_path))
    assert info["config"]["dec_depth"] == 2 and info["keys"] == ["decoder.0.weight"]


def test_loading_without_the_authors_package_names_it(tmp_path):
    json.dump({}, open(tmp_path / "config.json", "w"))
    save_file({"w": torch.zeros(1)}, str(tmp_path / "model.safetensors"))
    import importlib.util

    if importlib.util.find_spec("mvinverse") is not None:
        pytest.skip("the authors' package is installed here")
    with pytest.raises(ImportError, match="Maddog241/mvinverse"):
        mvinverse.load(str(tmp_path))


class Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_pt_checkpoints_are_read_tensors_only(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"model": {"w": torch.ones(2)}}, str(good))
    assert torch.equal(mvinverse.read_pt_checkpoint(str(good))["w"], torch.ones(2))
    bad = tmp_path / "bad.pt"
    torch.save({"model": {"w": torch.ones(1)}, "x": Exploit()}, str(bad))
    with pytest.raises(ValueError, match="refused"):
        mvinverse.read_pt_checkpoint(str(bad))


def test_outputs_become_unit_normals_and_clamped_maps_at_the_image_size():
    assert mvinverse.input_size(2000, 1000) == (1022, 504)  # 1024 × 512, floored to multiples of 14
    assert mvinverse.input_size(30, 40) == (28, 28)
    views = mvinverse.prepare_views(torch.rand(2, 30, 45, 3))
    assert views.shape == (1, 2, 3, 28, 42)
    out = {"albedo": torch.rand(1, 2, 28, 42, 3) * 2, "metallic": torch.rand(1, 2, 28, 42, 1),  # channels last
           "roughness": torch.rand(1, 2, 28, 42, 1), "normal": torch.randn(1, 2, 28, 42, 3),
           "shading": torch.rand(1, 2, 28, 42, 3)}
    maps = mvinverse.outputs_to_maps(out, (30, 40))
    assert len(maps) == 2 and maps[0]["albedo"].shape == (30, 40, 3) and maps[0]["roughness"].shape == (30, 40)
    assert float(maps[1]["albedo"].max()) <= 1
    assert torch.allclose(maps[0]["normal"].norm(dim=-1), torch.ones(30, 40), atol=1e-5)
    assert most_restrictive(maps[0]["models"])[0] == "non-commercial"


def test_estimate_runs_a_model_with_mvinverses_interface_and_keeps_the_view_size():
    class SameInterface(torch.nn.Module):
        """Stand-in with MVInverse's forward contract: [B, N, 3, H, W] in 0..1 → channels-last maps."""

        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(()))

        def forward(self, imgs):
            assert imgs.shape[-2] % 14 == 0 and imgs.shape[-1] % 14 == 0 and float(imgs.max()) <= 1
            x = imgs.permute(0, 1, 3, 4, 2) * self.scale
            return {"albedo": x, "roughness": x[..., :1], "metallic": x[..., 1:2], "normal": x - 0.5,
                    "shading": x}

    ramp = torch.linspace(0, 1, 70).view(1, 1, 70, 1)
    views = (ramp * torch.tensor([1.0, 0.5, 0.2]) + torch.arange(3).view(3, 1, 1, 1) * 0.1).expand(3, 50, 70, 3) / 1.3
    maps = mvinverse.estimate(SameInterface(), views)
    assert len(maps) == 3 and maps[2]["albedo"].shape == (50, 70, 3) and maps[0]["metallic"].shape == (50, 70)
    assert float((maps[1]["albedo"] - views[1]).abs().mean()) < 0.02  # resized there and back, view order kept
