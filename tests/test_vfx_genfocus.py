import pytest
import torch
from safetensors.torch import save_file

from vibeboard.optics import genfocus as G

FLUX_TINY = dict(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
                 num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=True,
                 axes_dims_rope=(4, 6, 6))
# OminiControl / GenFocus LoRA targets (diffusers module names)
TARGETS = ["x_embedder", "transformer_blocks.0.norm1.linear", "transformer_blocks.0.attn.to_q",
           "transformer_blocks.0.attn.to_k", "transformer_blocks.0.attn.to_v", "transformer_blocks.0.attn.to_out.0",
           "transformer_blocks.0.ff.net.2", "single_transformer_blocks.0.norm.linear",
           "single_transformer_blocks.0.proj_mlp", "single_transformer_blocks.0.proj_out",
           "single_transformer_blocks.0.attn.to_q", "single_transformer_blocks.0.attn.to_k",
           "single_transformer_blocks.0.attn.to_v"]


def tiny_flux(seed=0):
    from diffusers import FluxTransformer2DModel
    torch.manual_seed(seed)
    model = FluxTransformer2DModel(**FLUX_TINY)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def tiny_vae(seed=0):
    from diffusers import AutoencoderKL
    torch.manual_seed(seed)
    return AutoencoderKL(block_out_channels=(8, 8, 8, 8), down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, layers_per_block=1,
                         norm_num_groups=4, shift_factor=0.1, scaling_factor=0.5).eval()


def lora_file(path, model, rank=2, seed=0, alpha=None):
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name in TARGETS:
        lin = model.get_submodule(name)
        state[f"transformer.{name}.lora_A.weight"] = torch.randn(rank, lin.in_features, generator=g) * 0.1
        state[f"transformer.{name}.lora_B.weight"] = torch.randn(lin.out_features, rank, generator=g) * 0.1
        if alpha:
            state[f"transformer.{name}.alpha"] = torch.tensor(float(alpha))
    save_file(state, str(path))
    return state


def streams(seed=0, n_img=4, n_txt=5):
    g = torch.Generator().manual_seed(seed)
    pooled = torch.randn(1, 32, generator=g)
    t = torch.tensor([0.7])
    gd = torch.tensor([3.5])
    text = G.Stream(torch.randn(1, n_txt, 32, generator=g), torch.zeros(n_txt, 3), t, gd, pooled)
    image = G.Stream(torch.randn(1, n_img, 16, generator=g), G.latent_ids(2, 2), t, gd, pooled)
    return text, image, pooled


@torch.no_grad()
def test_single_stream_matches_diffusers_forward():
    model = tiny_flux()
    text, image, pooled = streams()
    ours = G.multi_stream_forward(model, text, image, [])
    ref = model(hidden_states=image.hidden, encoder_hidden_states=text.hidden, pooled_projections=pooled,
                timestep=image.timestep, img_ids=image.ids, txt_ids=text.ids, guidance=image.guidance,
                return_dict=False)[0]
    assert torch.allclose(ours, ref, atol=1e-5)


@torch.no_grad()
def test_lora_layout_loads_and_equals_merged_weights(tmp_path):
    model = tiny_flux()
    state = lora_file(tmp_path / "deblurNet.safetensors", model, alpha=4.0)
    merged = tiny_flux()
    for name in TARGETS:
        lin = merged.get_submodule(name)
        lin.weight += (4.0 / 2) * state[f"transformer.{name}.lora_B.weight"] @ state[f"transformer.{name}.lora_A.weight"]
    assert G.load_lora_file(model, str(tmp_path / "deblurNet.safetensors"), "deblurring") == len(TARGETS)
    text, image, pooled = streams(1)
    for s in (text, image):
        s.adapter = "deblurring"
    ours = G.multi_stream_forward(model, text, image, [])
    ref = merged(hidden_states=image.hidden, encoder_hidden_states=text.hidden, pooled_projections=pooled,
                 timestep=image.timestep, img_ids=image.ids, txt_ids=text.ids, guidance=image.guidance,
                 return_dict=False)[0]
    assert torch.allclose(ours, ref, atol=1e-5)
    # adapter off for every stream → the base model again
    text.adapter = image.adapter = None
    base = tiny_flux()
    ref0 = base(hidden_states=image.hidden, encoder_hidden_states=text.hidden, pooled_projections=pooled,
                timestep=image.timestep, img_ids=image.ids, txt_ids=text.ids, guidance=image.guidance,
                return_dict=False)[0]
    assert torch.allclose(G.multi_stream_forward(model, text, image, []), ref0, atol=1e-5)


@torch.no_grad()
def test_condition_stream_lora_and_position_shift_matter(tmp_path):
    model = tiny_flux()
    lora_file(tmp_path / "bokehNet.safetensors", model, seed=3)
    G.load_lora_file(model, str(tmp_path / "bokehNet.safetensors"), "bokeh")
    text, image, pooled = streams(2)
    g = torch.Generator().manual_seed(5)
    cond = G.Stream(torch.randn(1, 4, 16, generator=g), G.latent_ids(2, 2), torch.zeros(1), torch.ones(1), pooled, "bokeh")
    a = G.multi_stream_forward(model, text, image, [cond])
    cond_off = G.Stream(cond.hidden, cond.ids, cond.timestep, cond.guidance, pooled, None)
    assert (G.multi_stream_forward(model, text, image, [cond_off]) - a).abs().max() > 1e-4
    shifted = G.Stream(cond.hidden, G.latent_ids(2, 2, (0, 32)), cond.timestep, cond.guidance, pooled, "bokeh")
    assert (G.multi_stream_forward(model, text, image, [shifted]) - a).abs().max() > 1e-5
    assert (G.multi_stream_forward(model, text, image, []) - a).abs().max() > 1e-4
    m = G.condition_group_mask(2)
    assert m.tolist() == [[True] * 4, [True] * 4, [True, True, True, False], [True, True, False, True]]


def test_lora_parse_errors():
    with pytest.raises(ValueError, match="not a LoRA"):
        G.parse_lora_state({"x.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="only one of"):
        G.parse_lora_state({"transformer.x_embedder.lora_A.weight": torch.zeros(2, 16)})


@torch.no_grad()
def test_deblur_and_bokeh_generate_tiny(tmp_path):
    model = tiny_flux()
    lora_file(tmp_path / "d.safetensors", model, seed=1)
    G.load_lora_file(model, str(tmp_path / "d.safetensors"), "deblurring")
    vae = tiny_vae()
    g = torch.Generator().manual_seed(0)
    blurry = torch.rand(1, 32, 48, 3, generator=g)
    emb = torch.randn(1, 5, 32, generator=g)
    pooled = torch.randn(1, 32, generator=g)
    ids = torch.zeros(5, 3)
    aif = G.generate(model, vae, emb, pooled, ids, 32, 48, G.deblur_conditions(blurry), "deblurring", steps=2, seed=1)
    assert aif.shape == (1, 32, 48, 3) and torch.isfinite(aif).all()
    again = G.generate(model, vae, emb, pooled, ids, 32, 48, G.deblur_conditions(blurry), "deblurring", steps=2, seed=1)
    assert torch.equal(aif, again)
    defocus = torch.rand(1, 32, 48, generator=g)
    out = G.generate(model, vae, emb, pooled, ids, 32, 48, G.bokeh_conditions(aif, defocus), "deblurring",
                     steps=2, guidance=1.0, seed=1)
    assert out.shape == aif.shape and not torch.equal(out, aif)
