import pytest
import torch

from vibeboard.optics import genfocus as G

from vfx_helpers import LORA_TARGETS as TARGETS
from vfx_helpers import tiny_flux
from vfx_helpers import tiny_flux_vae as tiny_vae
from vfx_helpers import write_lora as lora_file


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


def test_tile_layout_covers_the_grid_like_genfocus():
    th, tw, origins = G.tile_layout(40, 70)
    assert (th, tw) == (32, 32)
    covered = torch.zeros(40, 70, dtype=torch.bool)
    for r, c in origins:
        covered[r:r + 32, c:c + 32] = True
    assert covered.all()
    assert sorted({c for _, c in origins}) == [0, 28, 38] and sorted({r for r, _ in origins}) == [0, 8]
    assert G.tile_layout(10, 12) == (10, 12, [(0, 0)])


@torch.no_grad()
def test_tiled_velocity_matches_whole_for_one_tile_and_blends_otherwise():
    model = tiny_flux()
    text, image, pooled = streams(3, n_img=6 * 8)
    image.ids = G.latent_ids(6, 8)
    g = torch.Generator().manual_seed(4)
    cond = G.Stream(torch.randn(1, 48, 16, generator=g), G.latent_ids(6, 8), torch.zeros(1), torch.ones(1), pooled)
    mask = G.condition_group_mask(1)
    whole = G.multi_stream_forward(model, text, image, [cond], mask)
    one = G._tiled_velocity(model, text, image.hidden, [cond], mask, G.tile_layout(6, 8, 32), image.timestep,
                            image.guidance, pooled, 6, 8)
    assert torch.allclose(one, whole, atol=1e-5)
    small = G._tiled_velocity(model, text, image.hidden, [cond], mask, G.tile_layout(6, 8, 4), image.timestep,
                              image.guidance, pooled, 6, 8)
    assert small.shape == whole.shape and (small - whole).abs().max() > 1e-5
    vae = tiny_vae()
    img = torch.rand(1, 48, 64, 3, generator=g)
    out = G.generate(model, vae, text.hidden, pooled, text.ids, 48, 64, [(img, (0, 0), False)], None, steps=1, tile=4)
    assert out.shape == (1, 48, 64, 3) and torch.isfinite(out).all()
