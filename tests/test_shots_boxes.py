"""ReCo box conditioner: VB_BOXES JSON, masks, regional cross-attention, plate kept outside the boxes, ReCo canvas."""
import json

import pytest
import torch

from vibeboard.shots import boxes, reco, tiny_models
from vibeboard.shots.regional_attention import RegionalCrossAttnProcessor, regional_attention, regional_context
from vibeboard.wan import conditioning as C
from vibeboard.wan import sampler as S
from vibeboard.wan.handle import WanHandle


def _boxes_run(model, vae, plate, boxset, ctx, box_ctx=(), neg=None, steps=3, cfg=5.0, seed=0, scheduler="flow_euler"):
    """Block Scene through the one Wan sampler: (handle, box conditioning, normalised latents)."""
    wan = WanHandle.from_modules(transformer=model, vae=vae)
    bc = reco.box_conditioning(wan, plate, boxset, ctx, box_ctx, neg)
    settings = S.SamplerSettings(steps=steps, cfg=cfg, seed=seed, scheduler=scheduler)
    return wan, bc, S.sample(wan, bc.cond, settings, tuple(bc.plate_latents.shape), normalized=True)

BLOCKING = {
    "format": "vibeboard.boxes", "version": 1, "units": "pixels", "width": 200, "height": 100,
    "shots": {
        "1": [{"label": "hero", "prompt": "a knight", "box": [20, 10, 100, 90]}],
        "2": [{"label": "dog", "prompt": "a dog", "keyframes": [{"frame": 0, "box": [0, 0, 50, 50]},
                                                                {"frame": 8, "box": [100, 50, 150, 100]}]},
              {"label": "cat", "prompt": "a cat", "box": [150, 0, 200, 40]}],
    },
}


def test_blocking_json_import_export_and_interpolation(tmp_path):
    s1 = boxes.parse_boxes(json.dumps(BLOCKING))
    assert s1.shot == "1" and s1.boxes[0].at(3) == pytest.approx((0.1, 0.1, 0.5, 0.9))
    s2 = boxes.parse_boxes(BLOCKING, shot="2")
    dog = s2.boxes[0]
    assert dog.at(0) == pytest.approx((0, 0, 0.25, 0.5))
    assert dog.at(4) == pytest.approx((0.25, 0.25, 0.5, 0.75))   # halfway
    assert dog.at(20) == pytest.approx((0.5, 0.5, 0.75, 1.0))    # held after the last keyframe
    path = str(tmp_path / "b.json")
    boxes.save_boxes(s2, path)
    back = boxes.load_boxes(path)
    assert [b.label for b in back.boxes] == ["dog", "cat"]
    assert back.boxes[0].keyframes == s2.boxes[0].keyframes and back.boxes[1].at(5) == s2.boxes[1].at(5)
    with pytest.raises(KeyError):
        boxes.parse_boxes(BLOCKING, shot="9")


def test_reads_the_box_widget_json_with_active_frames():
    s = boxes.parse_boxes('{"boxes": [{"x0": 0.5, "y0": 0, "x1": 1, "y1": 0.5, "label": "sign", '
                          '"frame_start": 2, "frame_end": 4}]}')
    pix = boxes.pixel_masks(s, 6, 8, 8)
    assert pix[0, [0, 1, 5]].sum() == 0 and pix[0, 2:5, :4, 4:].eq(1).all() and pix[0, 2:5, 4:].sum() == 0
    assert boxes.parse_boxes(json.dumps(s.to_json())).boxes[0].frame_end == 4


def test_masks_pixel_latent_token():
    s = boxes.parse_boxes([{"label": "a", "box": [0.0, 0.0, 0.5, 0.5]},
                           {"label": "b", "keyframes": [{"frame": 0, "box": [0.5, 0.5, 0.75, 0.75]},
                                                        {"frame": 8, "box": [0.75, 0.75, 1.0, 1.0]}]}])
    pix = boxes.pixel_masks(s, 9, 32, 32)
    assert pix.shape == (2, 9, 32, 32)
    assert pix[0, :, :16, :16].eq(1).all() and pix[0, :, 16:].eq(0).all()
    assert pix[1, 0, 16:24, 16:24].eq(1).all() and pix[1, 8, 24:, 24:].eq(1).all() and pix[1, 8, 16:24, 16:24].eq(0).all()
    lat = boxes.latent_masks(pix)
    assert lat.shape == (2, 3, 4, 4)
    # latent frame 2 covers pixel frames 5..8: the moving box's cells from all of them are inside
    assert lat[1, 2, 2, 2] == 1 and lat[1, 2, 3, 3] == 1 and lat[1, 0, 3, 3] == 0
    tok = boxes.token_masks(lat)
    assert tok.shape == (2, 3 * 2 * 2) and tok[0].view(3, 2, 2)[:, 0, 0].all()


def test_regional_prompt_changes_only_tokens_inside_its_box():
    torch.manual_seed(0)
    model = tiny_models.wan_transformer(in_channels=16)
    attn = model.blocks[0].attn2
    dim = 32
    T, h, w = 2, 4, 6                      # token grid after patching
    lat_a = torch.zeros(T, h, w)
    lat_a[:, :2, :3] = 1                    # box A: top-left
    lat_b = torch.zeros(T, h, w)
    lat_b[:, 2:, 3:] = 1                    # box B: bottom-right
    tmask = torch.stack([lat_a, lat_b]).flatten(1).bool()
    hidden = torch.randn(1, T * h * w, dim)
    g, a, b = torch.randn(1, 7, dim), torch.randn(1, 5, dim), torch.randn(1, 6, dim)
    ctx, seg = regional_context(g, [a, b])
    a2 = a + torch.randn_like(a)            # perturb box A's prompt embedding
    ctx2, _ = regional_context(g, [a2, b])
    stock = attn.processor
    attn.set_processor(RegionalCrossAttnProcessor(tmask, seg, fallback=stock))
    try:
        out1, out2 = attn(hidden, ctx), attn(hidden, ctx2)
    finally:
        attn.set_processor(stock)
    diff = (out1 - out2).abs().amax(dim=-1)[0]
    inside_a = tmask[0]
    assert diff[inside_a].min() > 1e-3
    assert diff[~inside_a].max() < 1e-6
    # without the masks, the same perturbation changes every token
    plain = (attn(hidden, ctx) - attn(hidden, ctx2)).abs().amax(dim=-1)[0]
    assert plain.min() > 1e-4
    # the negative prompt (another length) goes through the stock path
    with regional_attention(model, tmask, seg):
        assert isinstance(model.blocks[1].attn2.processor, RegionalCrossAttnProcessor)
        neg = torch.randn(1, 7, dim)
        assert torch.allclose(attn(hidden, neg), stock(attn, hidden, neg))
    assert model.blocks[1].attn2.processor is not None and not isinstance(model.blocks[1].attn2.processor,
                                                                          RegionalCrossAttnProcessor)


def test_regional_prompt_with_i2v_image_tokens():
    torch.manual_seed(1)
    model = tiny_models.wan_transformer(in_channels=36, image_dim=24, added_kv_proj_dim=32)
    attn = model.blocks[0].attn2
    tmask = torch.zeros(1, 8, dtype=torch.bool)
    tmask[0, :3] = True
    hidden = torch.randn(1, 8, 32)
    img = torch.randn(1, 3, 32)                        # image tokens (after the image embedder) come first
    g, a = torch.randn(1, 4, 32), torch.randn(1, 5, 32)
    ctx, seg = regional_context(g, [a])
    ctx2, _ = regional_context(g, [a + 1.0])
    stock = attn.processor
    attn.set_processor(RegionalCrossAttnProcessor(tmask, seg, fallback=stock))
    try:
        d = (attn(hidden, torch.cat([img, ctx], 1)) - attn(hidden, torch.cat([img, ctx2], 1))).abs().amax(-1)[0]
        d_img = (attn(hidden, torch.cat([img, ctx], 1)) - attn(hidden, torch.cat([img * 2, ctx], 1))).abs().amax(-1)[0]
    finally:
        attn.set_processor(stock)
    assert d[:3].min() > 1e-4 and d[3:].max() < 1e-6
    assert d_img.min() > 1e-4                          # the image context still reaches every token


def test_box_generation_keeps_plate_outside_exactly():
    torch.manual_seed(0)
    model = tiny_models.wan_vace_transformer()
    vae = tiny_models.wan_vae()
    # one frame, a wide strip: box on the left 16 px; the decoder's receptive field is < 128 px
    s = boxes.parse_boxes([{"label": "hero", "prompt": "a knight", "box": [0.0, 0.0, 0.0625, 1.0]}])
    g = torch.Generator().manual_seed(0)
    plate = torch.rand(1, 3, 1, 32, 256, generator=g) * 2 - 1
    ctx, box_ctx, neg = torch.randn(1, 6, 32), torch.randn(1, 4, 32), torch.randn(1, 6, 32)
    wan, res, lat = _boxes_run(model, vae, plate, s, ctx, [box_ctx], neg, steps=3, cfg=3.0, seed=1)
    m = res.latent_mask.bool().expand_as(lat)
    assert lat.shape == res.plate_latents.shape == (1, 16, 1, 4, 32)
    assert torch.equal(lat[~m], res.plate_latents[~m])                  # exactly the plate outside
    assert (lat[m] - res.plate_latents[m]).abs().mean() > 0.1             # generated inside
    dec = C.vae_decode(wan, C.denormalize(wan, lat))
    dec_plate = C.vae_decode(wan, C.denormalize(wan, res.plate_latents))
    err = (dec - dec_plate).abs().mean(dim=(0, 1, 2, 3))                  # per pixel column
    inside = err[:16].mean()
    assert inside > 1e-3
    assert err[16 + 64:].max() < 0.05 * inside                           # 8 latent cells away: VAE spill only
    assert err[16 + 128:].max() < 1e-6                                    # beyond the decoder's receptive field


@pytest.mark.parametrize("scheduler", ["euler", "unipc"])
def test_box_generation_with_plain_t2v_transformer_is_latent_inpainting(scheduler):
    from vibeboard.wan.sampler import make_scheduler
    model = tiny_models.wan_transformer(in_channels=16)
    vae = tiny_models.wan_vae()
    s = boxes.parse_boxes([{"box": [0.5, 0.0, 1.0, 1.0]}])
    plate = torch.rand(1, 3, 5, 16, 32) * 2 - 1
    seen = []
    hook = model.register_forward_pre_hook(lambda mod, a, k: seen.append(k["hidden_states"].clone()), with_kwargs=True)
    sched = make_scheduler(scheduler, 5.0)
    sched.set_timesteps(3)
    try:
        _, res, lat = _boxes_run(model, vae, plate, s, torch.randn(1, 6, 32), steps=3, seed=7, scheduler=scheduler)
    finally:
        hook.remove()
    m = res.latent_mask.bool().expand_as(lat)
    assert torch.equal(lat[~m], res.plate_latents[~m])
    assert not torch.equal(lat[m], res.plate_latents[m])
    # the plate is re-imposed at every step: outside the boxes the DiT sees (1 - s) plate + s noise
    noise = torch.randn(res.plate_latents.shape, generator=torch.Generator().manual_seed(7))
    for x, sigma in zip(seen, sched.sigmas[:3]):
        want = (1 - float(sigma)) * res.plate_latents + float(sigma) * noise
        assert torch.allclose(x[~m], want[~m], atol=1e-5)


def test_reco_canvas_and_lora_in_published_layout(tmp_path):
    from safetensors.torch import save_file
    src = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    canvas, mask = reco.reco_canvas(src)
    assert canvas.shape == (1, 3, 5, 16, 32) and torch.equal(canvas[..., :16], src)
    assert mask[..., :16].eq(0).all() and mask[..., 16:].eq(1).all() and canvas[..., 16:].eq(0).all()
    vm = C.vace_mask_latents(mask)
    assert vm.shape == (64, 2, 2, 4) and vm[..., :2].eq(0).all() and vm[..., 2:].eq(1).all()

    model = tiny_models.wan_vace_transformer()
    g = torch.Generator().manual_seed(0)
    sd = {}  # PEFT inject_adapter_in_model names on DiffSynth's Wan DiT + VACE, adapter "default", rank 128
    for root, n in (("blocks", 2), ("vace_blocks", 1)):
        for i in range(n):
            for p in "qkvo":
                for part in ("self_attn", "cross_attn"):
                    sd[f"{root}.{i}.{part}.{p}.lora_A.default.weight"] = torch.randn(128, 32, generator=g) * .01
                    sd[f"{root}.{i}.{part}.{p}.lora_B.default.weight"] = torch.randn(32, 128, generator=g) * .01
            sd[f"{root}.{i}.ffn.0.lora_A.default.weight"] = torch.randn(128, 32, generator=g) * .01
            sd[f"{root}.{i}.ffn.0.lora_B.default.weight"] = torch.randn(64, 128, generator=g) * .01
            sd[f"{root}.{i}.ffn.2.lora_A.default.weight"] = torch.randn(128, 64, generator=g) * .01
            sd[f"{root}.{i}.ffn.2.lora_B.default.weight"] = torch.randn(32, 128, generator=g) * .01
    path = str(tmp_path / "ReCo_ori_rank128.safetensors")
    save_file(sd, path)
    from vibeboard.models import lora as lora_mod  # the Wan layer's loader reads ReCo's PEFT/DiffSynth names
    groups = lora_mod.read_lora(path, alpha=128)
    resolved = lora_mod.resolve(model, groups)
    assert len(resolved) == 30 and "vace_blocks.0.attn2.to_out.0" in resolved
    wan = WanHandle.from_modules(transformer=model, vae=tiny_models.wan_vae())
    wan.loras.append((groups, 1.0))
    target, full = reco.reco_edit(wan, src, torch.randn(1, 6, 32), S.SamplerSettings(steps=2), normalized=True)
    assert target.shape == (1, 16, 2, 2, 2) and full.shape == (1, 16, 2, 2, 4)
    src_lat = C.normalize(wan, C.vae_encode(wan, torch.cat([src, torch.zeros_like(src)], dim=-1)))
    assert torch.equal(full[..., :2], src_lat[..., :2])                    # the source half is given, not generated
