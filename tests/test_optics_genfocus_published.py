"""GenFocus with the published LoRA files (nycu-cplab/Genfocus-Model), as rayray9999/Genfocus runs them:
deblurNet.safetensors reads ONE condition (the blurry image, Inference_deblurNet.py / demo.py); only
deblurNet_with_pre_deblur.safetensors reads two (a pre-deblurred image — black by default — shifted 32 tokens, then
the blurry image). Tiling only when the shorter side is ≥ 512 px (`force_no_tile = min(w, h) < 512`)."""
import pytest
import torch

import vfx_helpers as H
from vibeboard.common.runtime import NodeInputError
from vibeboard.optics import genfocus as G
from vibeboard.optics_learned.nodes import VBGenFocusDeblur, VBGenFocusLoader


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    pipe = H.write_flux_folder(root / "diffusers" / "FLUX.1-dev")
    for name, seed in (("deblurNet", 1), ("deblurNet_with_pre_deblur", 3)):  # where `models pull` puts them
        H.write_lora(root / "loras" / "Genfocus" / f"{name}.safetensors", pipe.transformer, seed=seed)
    return root


@pytest.fixture()
def loaded(models, monkeypatch):
    from vibeboard.common import runtime
    monkeypatch.setitem(runtime._dirs, "models", str(models))

    def load(deblur_file):
        return VBGenFocusLoader().load("diffusers/FLUX.1-dev", f"Genfocus/{deblur_file}", "", "fp32", "cpu")[0]
    return load


def _spy(monkeypatch):
    calls = []

    def fake_generate(transformer, vae, emb, pooled, ids, h, w, conditions, adapter, *args, **kwargs):
        calls.append(conditions)
        return torch.zeros(1, h, w, 3)

    monkeypatch.setattr(G, "generate", fake_generate)
    return calls


def test_deblurnet_runs_with_the_blurry_image_alone(loaded, monkeypatch):
    handle = loaded("deblurNet.safetensors")
    assert handle.deblur_variant == "deblurNet"
    calls = _spy(monkeypatch)
    blurry = torch.rand(1, 48, 64, 3)
    VBGenFocusDeblur().run(handle, blurry, 1, 3.5, 42, 1024)
    (conditions,) = calls
    assert len(conditions) == 1
    image, delta, raw = conditions[0]
    assert delta == (0, 0) and raw is False and torch.equal(image, blurry)
    with pytest.raises(NodeInputError, match="pre_deblur"):  # the plain model has no second input
        VBGenFocusDeblur().run(handle, blurry, 1, 3.5, 42, 1024, pre_deblur=blurry)


def test_with_pre_deblur_reads_a_shifted_second_condition(loaded, monkeypatch):
    handle = loaded("deblurNet_with_pre_deblur.safetensors")
    assert handle.deblur_variant == "deblurNet_with_pre_deblur"
    calls = _spy(monkeypatch)
    blurry, pre = torch.rand(1, 48, 64, 3), torch.rand(1, 48, 64, 3)
    VBGenFocusDeblur().run(handle, blurry, 1, 3.5, 42, 1024)
    VBGenFocusDeblur().run(handle, blurry, 1, 3.5, 42, 1024, pre_deblur=pre)
    (black, d0, _), (first, d1, _) = calls[0]
    assert d0 == (0, 32) and d1 == (0, 0) and black.abs().sum() == 0 and torch.equal(first, blurry)
    assert torch.allclose(calls[1][0][0], pre) and calls[1][0][1] == (0, 32)


def test_tiles_only_when_the_shorter_side_is_512px():
    assert not G.uses_tiles(16, 64)    # 256×1024 px: 1024 tokens, yet upstream does not tile
    assert not G.uses_tiles(31, 200)
    assert G.uses_tiles(32, 32) and G.uses_tiles(40, 64)
    assert not G.uses_tiles(64, 64, tile=0)


def test_wide_image_is_denoised_whole(monkeypatch):
    torch.manual_seed(0)
    model, vae = H.tiny_flux(), H.tiny_flux_vae()
    monkeypatch.setattr(G, "_tiled_velocity", lambda *a, **k: (_ for _ in ()).throw(AssertionError("tiled")))
    emb, pooled, ids = torch.randn(1, 4, 32), torch.randn(1, 32), torch.zeros(4, 3)
    blurry = torch.rand(1, 256, 1024, 3)
    out = G.generate(model, vae, emb, pooled, ids, 256, 1024, G.deblur_conditions(blurry), "deblurring", steps=1)
    assert out.shape == (1, 256, 1024, 3)
