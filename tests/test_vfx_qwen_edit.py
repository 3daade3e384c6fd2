import pytest
import torch
from safetensors.torch import save_file

from vibeboard.vfx import qwen_edit as Q


def tiny_transformer(seed=0):
    from diffusers import QwenImageTransformer2DModel
    torch.manual_seed(seed)
    return QwenImageTransformer2DModel(patch_size=2, in_channels=16, out_channels=4, num_layers=2,
                                       attention_head_dim=16, num_attention_heads=2, joint_attention_dim=24,
                                       axes_dims_rope=(4, 6, 6)).eval()


def test_comfy_single_file_transformer_loads_with_prefix_and_fp8_scale(tmp_path):
    model = tiny_transformer()
    state = {"model.diffusion_model." + k: v.clone() for k, v in model.state_dict().items()}
    # an fp8-scaled weight like ComfyUI's *_fp8_e4m3fn_scaled files
    w = state["model.diffusion_model.transformer_blocks.0.attn.to_q.weight"]
    scale = w.abs().max() / 200
    state["model.diffusion_model.transformer_blocks.0.attn.to_q.weight"] = (w / scale).to(torch.float8_e4m3fn)
    state["model.diffusion_model.transformer_blocks.0.attn.to_q.scale_weight"] = scale.reshape(1)
    save_file(state, str(tmp_path / "qwen_image_edit_2509_fp8_e4m3fn_scaled.safetensors"))
    loaded = Q.load_transformer_file(str(tmp_path / "qwen_image_edit_2509_fp8_e4m3fn_scaled.safetensors"),
                                     torch.float32, attention_head_dim=16, axes_dims_rope=(4, 6, 6))
    assert loaded.config.num_layers == 2 and loaded.config.joint_attention_dim == 24
    assert loaded.config.in_channels == 16 and loaded.config.out_channels == 4
    ref = model.state_dict()
    for k, v in loaded.state_dict().items():
        tol = 0.05 * float(ref[k].abs().max()) if k.endswith("to_q.weight") and ".0." in k else 0
        assert torch.allclose(v, ref[k], atol=tol), k
    # and it runs like the original
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 16, 16, generator=g)
    txt = torch.randn(1, 5, 24, generator=g)
    kw = dict(hidden_states=x, encoder_hidden_states=txt, encoder_hidden_states_mask=torch.ones(1, 5),
              timestep=torch.tensor([0.5]), img_shapes=[[(1, 4, 4)]], return_dict=False)
    assert torch.allclose(loaded(**kw)[0], model(**kw)[0], atol=0.05)


def test_comfy_vae_file_in_wan_naming(tmp_path):
    from diffusers import AutoencoderKLQwenImage
    from vibeboard.models import wan_keys
    torch.manual_seed(0)
    vae = AutoencoderKLQwenImage(base_dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                                 temperal_downsample=[False, True, True]).eval()
    state = {wan_keys.diffusers_to_wan_vae_key(k, 2): v.clone() for k, v in vae.state_dict().items()}
    save_file(state, str(tmp_path / "qwen_image_vae.safetensors"))
    loaded = Q.load_vae_file(str(tmp_path / "qwen_image_vae.safetensors"), torch.float32)
    for k, v in vae.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    with pytest.raises(ValueError, match="not a Qwen-Image transformer"):
        save_file({"x.weight": torch.zeros(1)}, str(tmp_path / "bad.safetensors"))
        Q.load_transformer_file(str(tmp_path / "bad.safetensors"))


def test_mask_composite_keeps_original_outside():
    orig = torch.zeros(1, 32, 32, 3)
    edited = torch.ones(1, 16, 16, 3)
    mask = torch.zeros(1, 32, 32)
    mask[:, 8:24, 8:24] = 1
    out = Q.composite(orig, edited, mask, feather_px=0)
    assert out.shape == (1, 32, 32, 3)
    assert out[0, :8].abs().max() == 0 and torch.allclose(out[0, 10:22, 10:22], torch.ones(12, 12, 3))
    soft = Q.composite(orig, edited, mask, feather_px=3)
    assert 0 < float(soft[0, 8, 16, 0]) < 1
