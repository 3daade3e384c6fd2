"""Loaders read checkpoints written with the published key names and reproduce the directly built models."""
import os

import pytest
import torch

from vibeboard.models import loaders, tiny, wan_keys


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("comfy_models"))
    return tiny.write_comfy_layout(root)


def close(a, b):
    """Same weights → same outputs up to float rounding (GEMM paths can differ with memory layout)."""
    assert a.abs().max() > 1e-3
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def _inputs(in_channels=16, text_dim=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, in_channels, 2, 4, 4, generator=g)
    emb = torch.randn(1, tiny.TEXT_LEN, text_dim, generator=g)
    return x, torch.tensor([600.0]), emb


@pytest.mark.parametrize("kind,seed", [("t2v", 0), ("i2v", 1), ("vace", 2)])
def test_wan_single_file_matches_direct_model(comfy, kind, seed):
    ref = tiny.build_transformer(kind, seed)
    model = loaders.load_wan_transformer(comfy[kind], "fp32")
    assert type(model) is type(ref)
    x, t, emb = _inputs(36 if kind == "i2v" else 16)
    kwargs = {}
    if kind == "i2v":
        kwargs["encoder_hidden_states_image"] = torch.randn(1, 17, 24)
    if kind == "vace":
        kwargs["control_hidden_states"] = torch.randn(1, 96, 2, 4, 4)
    with torch.no_grad():
        a = ref(x, t, emb, return_dict=False, **kwargs)[0]
        b = model(x, t, emb, return_dict=False, **kwargs)[0]
    assert a.abs().max() > 0.1  # a real output, not zeros
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)  # same weights; only GEMM rounding may differ


def test_original_keys_are_what_diffusers_own_converter_expects():
    """Our original↔diffusers mapping agrees with diffusers' single-file converter (independent code)."""
    from diffusers.loaders.single_file_utils import (convert_wan_transformer_to_diffusers,
                                                     convert_wan_vae_to_diffusers)
    for kind in ("t2v", "i2v", "vace"):
        sd = tiny.build_transformer(kind).state_dict()
        original = {wan_keys.diffusers_to_wan_key(k): v for k, v in sd.items()}
        assert any(k.startswith("blocks.0.self_attn.q") for k in original)
        assert set(convert_wan_transformer_to_diffusers(dict(original))) == set(sd)
        assert {wan_keys.wan_to_diffusers_key("model.diffusion_model." + k) for k in original} == set(sd)
    vae_sd = tiny.build_vae().state_dict()
    original = {wan_keys.diffusers_to_wan_vae_key(k): v for k, v in vae_sd.items()}
    assert "decoder.upsamples.4.shortcut.weight" in original
    assert set(convert_wan_vae_to_diffusers(original)) == set(vae_sd)


def test_prefixed_bf16_file_and_keep_fp32(tmp_path):
    ref = tiny.build_transformer("t2v", 3)
    path = tiny.save_comfy_transformer(ref, str(tmp_path / "w.safetensors"), prefix="model.diffusion_model.",
                                       dtype=torch.bfloat16)
    model = loaders.load_wan_transformer(path, "bf16")
    assert model.blocks[0].attn1.to_q.weight.dtype == torch.bfloat16
    assert model.blocks[0].scale_shift_table.dtype == torch.float32  # diffusers keeps it fp32 too
    assert torch.equal(model.blocks[0].attn1.to_q.weight, ref.blocks[0].attn1.to_q.weight.to(torch.bfloat16))


def test_vae_single_file_roundtrip(comfy):
    ref = tiny.build_vae()
    vae = loaders.load_wan_vae(comfy["vae"], "fp32")
    z = torch.randn(1, 16, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        close(ref.decode(z).sample, vae.decode(z).sample)


def test_umt5_fp8_scaled_file_is_dequantised(comfy, tmp_path):
    ref = tiny.build_umt5()
    ids = torch.tensor([[11, 15, 13, 1, 0, 0]])
    mask = (ids != 0).long()
    exact = loaders.load_umt5(tiny.save_comfy_umt5(ref, str(tmp_path / "u.safetensors")), "fp32")
    with torch.no_grad():
        want = ref(ids, mask).last_hidden_state
        close(exact(ids, mask).last_hidden_state, want)
        fp8 = loaders.load_umt5(comfy["umt5"], "fp32")
        got = fp8(ids, mask).last_hidden_state
    # fp8 weights are lossy but must be close and clearly not random
    assert (got - want).abs().max() < 0.35 * want.abs().max()
    assert torch.nn.functional.cosine_similarity(got.flatten(), want.flatten(), dim=0) > 0.98


def test_clip_vision_single_file(comfy):
    ref = tiny.build_clip()
    model = loaders.load_clip_vision(comfy["clip_vision"], "fp32")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        a = ref(pixel_values=x, output_hidden_states=True).hidden_states[-2]
        b = model(pixel_values=x, output_hidden_states=True).hidden_states[-2]
    close(a, b)


def test_diffusers_folder_layout(tmp_path):
    folder = tiny.write_diffusers_layout(str(tmp_path / "Wan2.1-T2V-1.3B-Diffusers"), "t2v", seed=5)
    ref = tiny.build_transformer("t2v", 5)
    model = loaders.load_wan_transformer(folder, "fp32")
    x, t, emb = _inputs()
    with torch.no_grad():
        close(ref(x, t, emb).sample, model(x, t, emb).sample)
    assert loaders.load_wan_vae(folder, "fp32").config.base_dim == tiny.TINY_VAE["base_dim"]
    assert loaders.load_tokenizer(folder)("a cat").input_ids


def test_fp8_storage_upcasts_and_stays_close(comfy):
    full = loaders.load_wan_transformer(comfy["t2v"], "fp32")
    fp8 = loaders.load_wan_transformer(comfy["t2v"], "fp8_e4m3fn")
    q = fp8.blocks[0].attn1.to_q
    assert q.weight.dtype == torch.float8_e4m3fn
    assert q.weight.numel() * q.weight.element_size() * 2 == full.blocks[0].attn1.to_q.weight.numel() * 2
    x, t, emb = _inputs()
    with torch.no_grad():
        a, b = full(x, t, emb).sample, fp8(x.bfloat16(), t, emb.bfloat16()).sample.float()
    assert torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0) > 0.99


def test_missing_and_pickled_files_refused(tmp_path):
    with pytest.raises(loaders.ModelFileError):
        loaders.load_wan_transformer(str(tmp_path / "nope.safetensors"))
    bad = tmp_path / "model.ckpt"
    bad.write_bytes(b"not loaded")
    with pytest.raises(ValueError, match="safetensors"):
        loaders.load_wan_transformer(str(bad))
    assert os.path.exists(bad)
