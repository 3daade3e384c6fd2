"""Qwen-Image-Edit-2511 single files load with zero_cond_t=True (the reference-image tokens are modulated at
timestep 0, as diffusers' Qwen/Qwen-Image-Edit-2511 transformer/config.json says); 2509 files stay as they are.
Nothing in the weights tells the two apart: the file name or an explicit variant decides."""
import json

import pytest
import torch
from safetensors.torch import save_file

from qwen_helpers import write_tiny_qwen_edit_folder
from vibeboard.vfx import qwen_edit as Q


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("qwen")
    folder = root / "diffusers" / "Qwen-Image-Edit-2509"
    write_tiny_qwen_edit_folder(folder)
    from diffusers import QwenImageTransformer2DModel
    state = {"model.diffusion_model." + k: v for k, v in
             QwenImageTransformer2DModel.from_pretrained(str(folder / "transformer")).state_dict().items()}
    paths = {}
    for name in ("qwen_image_edit_2511_bf16.safetensors", "qwen_image_edit_2509_fp8_e4m3fn_scaled.safetensors",
                 "my_edit_model.safetensors"):
        save_file({k: v.clone().contiguous() for k, v in state.items()}, str(root / name))
        paths[name] = str(root / name)
    return folder, paths


def _zero_cond(pipe):
    t = pipe.transformer
    return bool(t.config.zero_cond_t), bool(t.zero_cond_t), {bool(b.zero_cond_t) for b in t.transformer_blocks}


def test_2511_file_loads_with_zero_cond_t(files):
    folder, paths = files
    pipe = Q.load_pipeline(str(folder), paths["qwen_image_edit_2511_bf16.safetensors"], dtype=torch.float32,
                           attention_head_dim=16)
    assert _zero_cond(pipe) == (True, True, {True})


def test_2509_file_and_folder_stay_as_they_are(files):
    folder, paths = files
    pipe = Q.load_pipeline(str(folder), paths["qwen_image_edit_2509_fp8_e4m3fn_scaled.safetensors"],
                           dtype=torch.float32, attention_head_dim=16)
    assert _zero_cond(pipe) == (False, False, {False})
    assert _zero_cond(Q.load_pipeline(str(folder), dtype=torch.float32)) == (False, False, {False})


def test_unnamed_file_follows_the_explicit_variant_or_the_folder(files, tmp_path):
    folder, paths = files
    neutral = paths["my_edit_model.safetensors"]
    assert Q.release_variant(neutral, str(folder)) == "2509"          # folder config: zero_cond_t false
    pipe = Q.load_pipeline(str(folder), neutral, dtype=torch.float32, attention_head_dim=16, variant="2511")
    assert _zero_cond(pipe)[0] is True
    # a 2511 diffusers folder (its transformer/config.json has zero_cond_t) decides for an unnamed file
    cfg = json.loads((folder / "transformer" / "config.json").read_text())
    (tmp_path / "transformer").mkdir()
    (tmp_path / "transformer" / "config.json").write_text(json.dumps({**cfg, "zero_cond_t": True}))
    assert Q.release_variant(neutral, str(tmp_path)) == "2511"


def test_zero_cond_t_changes_what_the_model_computes(files):
    folder, paths = files
    a = Q.load_transformer_file(paths["my_edit_model.safetensors"], torch.float32, 16, (4, 6, 6), zero_cond_t=False)
    b = Q.load_transformer_file(paths["my_edit_model.safetensors"], torch.float32, 16, (4, 6, 6), zero_cond_t=True)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 32, 64, generator=g)  # 16 target tokens + 16 reference-image tokens
    txt = torch.randn(1, 5, 32, generator=g)
    kw = dict(hidden_states=x, encoder_hidden_states=txt, encoder_hidden_states_mask=torch.ones(1, 5),
              timestep=torch.tensor([0.7]), img_shapes=[[(1, 4, 4), (1, 4, 4)]], return_dict=False)
    with torch.no_grad():
        assert not torch.allclose(a(**kw)[0], b(**kw)[0], atol=1e-4)
