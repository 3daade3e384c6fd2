import pytest
import torch

from vibeboard.camera import preset_path
from vibeboard.models import tiny
from vibeboard.vfx.infcam import (InfCamWan, build_infcam_from_state, infcam_to_diffsynth_state, load_infcam,
                                  split_infcam_state)


def tiny_infcam(seed=0, rank=0):
    base = tiny.build_transformer("t2v", seed=seed)
    model = InfCamWan(base, lora_rank=rank).init_from_base()
    torch.manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.infcam.parameters():
            p.add_(torch.randn_like(p) * 0.05)  # make the zero-init additions matter
    return model.eval()


def inputs(b=1, f=3, h=8, w=12, seed=0, yaw=True):
    g = torch.Generator().manual_seed(seed)
    path = preset_path("pan_right" if yaw else "static", 4 * (f - 1) + 1, w * 8, h * 8, speed=2.0)
    ext, k = path.infcam_inputs()
    k_infcam = torch.tensor([[k[0, 0], k[0, 1], w * 8 / 2, h * 8 / 2]], dtype=torch.float32)
    return dict(latents=torch.randn(b, 16, f, h, w, generator=g),
                source_latents=torch.randn(b, 16, f, h, w, generator=g),
                timestep=torch.tensor([500.0] * b),
                encoder_hidden_states=torch.randn(b, 7, 32, generator=g),
                cam_extrinsic=torch.tensor(ext, dtype=torch.float32)[None].repeat(b, 1, 1),
                intrinsic_src=k_infcam.repeat(b, 1), intrinsic_trg=(k_infcam * torch.tensor([1.2, 1.2, 1, 1])).repeat(b, 1))


@torch.no_grad()
def test_without_triplet_output_it_is_plain_wan_on_the_target():
    model = tiny_infcam()
    for extra in model.infcam:
        extra.self_attn_pre.o.weight.zero_()
        extra.self_attn_pre.o.bias.zero_()
    x = inputs()
    out = model(**x)
    ref = model.base(x["latents"], x["timestep"], x["encoder_hidden_states"], return_dict=False)[0]
    assert out.shape == x["latents"].shape
    assert torch.allclose(out, ref, atol=1e-5)


@torch.no_grad()
def test_camera_source_and_batch_matter():
    model = tiny_infcam()
    x = inputs()
    out = model(**x)
    y = dict(x, cam_extrinsic=inputs(yaw=False)["cam_extrinsic"])
    assert (model(**y) - out).abs().max() > 1e-4  # the camera path changes the result
    z = dict(x, source_latents=x["source_latents"].flip(-1))
    assert (model(**z) - out).abs().max() > 1e-4  # so does the source video
    xb = inputs(b=2)
    outb = model(**xb)
    single = model(**{k: v[1:] for k, v in xb.items()})
    assert torch.allclose(outb[1:], single, atol=1e-5)  # batch items are independent


def expected_infcam_keys(n_layers):
    keys = {"patch_embedding.weight", "text_embedding.0.weight", "time_embedding.0.weight",
            "time_projection.1.weight", "head.head.weight", "head.modulation"}
    for i in range(n_layers):
        keys |= {f"blocks.{i}.self_attn.q.weight", f"blocks.{i}.cross_attn.k.weight", f"blocks.{i}.ffn.0.weight",
                 f"blocks.{i}.norm3.weight", f"blocks.{i}.modulation", f"blocks.{i}.modulation0",
                 f"blocks.{i}.cam_encoder.weight", f"blocks.{i}.zero_conv.weight",
                 f"blocks.{i}.self_attn_pre.q.weight", f"blocks.{i}.self_attn_pre.o.bias",
                 f"blocks.{i}.self_attn_pre.norm_q.weight", f"blocks.{i}.self_attn_pre.norm_k.weight"}
    return keys


@torch.no_grad()
@pytest.mark.parametrize("rank", [0, 2])
def test_checkpoint_in_infcam_layout_round_trips(tmp_path, rank):
    from safetensors.torch import save_file

    model = tiny_infcam(seed=3, rank=rank)
    state = infcam_to_diffsynth_state(model)
    assert expected_infcam_keys(2) <= set(state)
    assert state["blocks.1.cam_encoder.weight"].shape == (32, 16)
    assert state["blocks.1.zero_conv.weight"].shape == (32, 32, 1, 1, 1)
    assert state["blocks.0.modulation0"].shape == (1, 6, 32)
    if rank:
        assert state["blocks.0.self_attn_pre.q_lora.lora_A.weight"].shape == (rank, 32)
        assert "blocks.0.self_attn_pre.q_lora.original_layer.weight" in state
    path = tmp_path / "step35000.safetensors"
    save_file({k: v.clone().contiguous() for k, v in state.items()}, str(path))
    loaded = load_infcam(str(path), attention_head_dim=16, dtype=torch.float32)
    x = inputs(seed=5)
    assert torch.allclose(loaded(**x), model(**x), atol=1e-5)
    # additions-only file + a separately loaded Wan base
    _, extras, _ = split_infcam_state(state)
    only = {k: v for k, v in state.items() if ".self_attn_pre." in k or "modulation0" in k
            or "cam_encoder" in k or "zero_conv" in k}
    again = build_infcam_from_state(only, base=tiny.build_transformer("t2v", seed=3))
    assert torch.allclose(again(**x), model(**x), atol=1e-5)


def test_rejects_non_infcam_and_pickles(tmp_path):
    with pytest.raises(ValueError, match="not an InfCam"):
        build_infcam_from_state({"blocks.0.self_attn.q.weight": torch.zeros(2, 2)})
    with pytest.raises(ValueError, match="safetensors"):
        load_infcam(str(tmp_path / "step35000.ckpt"))


def test_camera_inputs_follow_infcam_conventions():
    from vibeboard.vfx.infcam_conditioning import camera_inputs
    from vibeboard.wan.sampler import make_scheduler
    path = preset_path("dolly_in", 81, 832, 480, subject_distance=2.0)
    ext, k_src, k_trg = camera_inputs(path, 81, 832, 480, zoom_factor=1.5, translation_scale=2.0)
    assert ext.shape == (1, 21, 12)  # every 4th frame
    assert torch.allclose(ext[0, 0], torch.tensor([1., 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0]))
    assert abs(float(ext[0, -1, 11]) - 2.0) < 1e-6  # dolly 0.5·d = 1.0 along +z, ×2 translation scale
    assert k_src[0, 2] == 416 and k_src[0, 3] == 240  # InfCam: principal point (W/2, H/2)
    assert torch.allclose(k_trg[0, :2], 1.5 * k_src[0, :2])
    sched = make_scheduler("flow_euler", 5.0)  # InfCam's DiffSynth schedule, now the shared sampler's
    sched.set_timesteps(4)
    s = sched.sigmas
    assert s[0] == 1.0 and s[-1] == 0.0 and len(s) == 5 and bool((s[1:] < s[:-1]).all())


@torch.no_grad()
def test_block_additions_match_a_naive_per_frame_reference():
    """Re-derive one block's InfCam additions frame by frame (loops, no fused reshapes) and compare."""
    import torch.nn.functional as F
    from vibeboard.vfx.infcam import apply_rope

    model = tiny_infcam(seed=4)
    x_in = inputs(b=2, seed=6)
    x_in["cam_extrinsic"][1] = torch.flip(x_in["cam_extrinsic"][1], dims=[0])  # two different cameras
    calls = []
    original = model._infcam_pre

    def spy(extra, x, tproj, ctx):
        out = original(extra, x, tproj, ctx)
        calls.append((extra, x, tproj, ctx, out))
        return out

    model._infcam_pre = spy
    model(**x_in)
    extra, x, tproj, ctx, got = calls[0]
    b, f, h, w, grid, k_trg, k_src, ext, rope3 = ctx
    d = x.shape[-1]
    hw = h * w
    shift0, scale0, gate0 = (extra.modulation0 + tproj.float()).chunk(6, dim=1)[:3]
    mod = F.layer_norm(x.float(), (d,), eps=1e-5) * (1 + scale0) + shift0
    sa = extra.self_attn_pre
    heads = sa.num_heads
    want = x.clone()
    eye = torch.eye(3).reshape(9)
    for bi in range(b):
        for fi in range(f):
            e = ext[bi, fi]
            e_it = e.clone()
            e_it[[0, 1, 2, 4, 5, 6, 8, 9, 10]] = eye[[0, 1, 2, 3, 4, 5, 6, 7, 8]]
            e_i0 = e_it.clone()
            e_i0[[3, 7, 11]] = 0
            emb_rt = extra.cam_encoder(torch.cat([k_trg[bi], e]))
            emb_it = extra.cam_encoder(torch.cat([k_trg[bi], e_it]))
            emb_i0 = extra.cam_encoder(torch.cat([k_src[bi], e_i0]))
            rows = slice(fi * hw, (fi + 1) * hw)
            trg = mod[bi, rows] + emb_rt
            src = mod[b + bi, rows] + emb_i0
            first = mod[b + bi, 0:hw]
            plane = first.T.reshape(1, d, h, w)
            warped = F.grid_sample(plane, grid[bi * f + fi][None], mode="bilinear", padding_mode="border",
                                   align_corners=False)[0].reshape(d, hw).T
            warped = F.conv3d(warped.T.reshape(1, d, 1, h, w), extra.zero_conv.weight,
                              extra.zero_conv.bias).reshape(d, hw).T  # the checkpoint's Conv3d, as a conv
            first = first + warped + emb_it
            seq = torch.cat([trg, src, first])
            q = sa.norm_q(sa.q(seq)).reshape(1, 3 * hw, heads, d // heads)
            k = sa.norm_k(sa.k(seq)).reshape(1, 3 * hw, heads, d // heads)
            v = sa.v(seq).reshape(1, 3 * hw, heads, d // heads)
            q, k = apply_rope(q, *rope3), apply_rope(k, *rope3)
            att = torch.softmax(torch.einsum("bqhd,bkhd->bhqk", q, k) / (d // heads) ** 0.5, dim=-1)
            o = sa.o(torch.einsum("bhqk,bkhd->bqhd", att, v).reshape(3 * hw, d))
            want[bi, rows] = x[bi, rows] + gate0[bi] * o[:hw]
            want[b + bi, rows] = x[b + bi, rows] + gate0[b + bi] * o[hw:2 * hw]
    assert torch.allclose(got, want, atol=1e-5)


@torch.no_grad()
def test_grid_cache_follows_camera_changes():
    model = tiny_infcam(seed=2)
    x = inputs()
    a = model(**x)
    assert torch.equal(model(**x), a)  # cached grid, same result
    x["cam_extrinsic"][0, 1:, 3] += 0.5  # in place: a new version of the same tensor
    fresh = tiny_infcam(seed=2)
    assert torch.allclose(model(**x), fresh(**x), atol=1e-6)
