"""StoryMem: RoPE positions, memory latents (noised as upstream, or held), output frame count, LoRA key mapping.

StoryMem is a conditioning builder for the one Wan sampler: these tests sample through `wan.sampler.sample`."""
import math

import pytest
import torch

from vibeboard.shots import storymem, tiny_models
from vibeboard.wan import rope
from vibeboard.wan import sampler as S
from vibeboard.wan.handle import WanHandle


@pytest.fixture(scope="module")
def tiny():
    return tiny_models.wan_transformer(seed=0)


def flow_sigmas(steps, shift):
    sched = S.make_scheduler("flow_euler", shift)
    sched.set_timesteps(steps)
    return sched.sigmas


def _sample(transformer, ctx, memory, shot_cond, frames, given, steps, shift, cfg, gap=5, mode="fixed", seed=0,
            ctx_null=None, transformer_2=None, boundary=None):
    wan = WanHandle.from_modules(transformer=transformer, transformer_2=transformer_2, boundary_ratio=boundary)
    cond = storymem.conditioning(ctx, ctx_null, memory, shot_cond, frames, given, gap, mode)
    settings = S.SamplerSettings(steps=steps, shift=shift, cfg=cfg, seed=seed, scheduler="flow_euler")
    return storymem.generate_latents(wan, cond, settings, (1,) + tuple(shot_cond.shape[1:]), normalized=True)


def test_positioned_rope_matches_diffusers_for_contiguous_positions(tiny):
    x = torch.randn(1, 36, 4, 6, 8)
    ref = tiny.rope(x)
    r = rope.install_positioned_rope(tiny)
    with rope.frame_positions(tiny, torch.arange(4)):
        got = r(x)
    assert torch.equal(ref[0], got[0]) and torch.equal(ref[1], got[1])
    with rope.frame_positions(tiny, torch.tensor([-10, -5, 0, 1])):
        shifted = r(x)
    assert not torch.equal(ref[0], shifted[0])


def test_memory_positions_layout():
    assert rope.memory_frame_positions(3, 4, 5).tolist() == [-15, -10, -5, 0, 1, 2, 3]
    assert rope.memory_frame_positions(2, 3, 0).tolist() == [0, 1, 2, 3, 4]


def test_mask_layout_matches_wan_i2v_folding():
    m = storymem.storymem_mask(2, 9, 1, 2, 2)  # 2 memory, 9 pixel frames -> 3 latent frames, MI2V
    assert m.shape == (1, 4, 5, 2, 2)
    assert m[0, :, :2].eq(1).all()            # memory frames
    assert m[0, :, 2].eq(1).all()             # first shot frame (given image, repeated x4)
    assert m[0, :, 3:].eq(0).all()
    mm = storymem.storymem_mask(1, 9, 5, 1, 1)  # MM2V: pixel frames 0..4 = shot latent frames 0 and 1
    assert mm[0, :, 1:3].eq(1).all() and mm[0, :, 3].eq(0).all()


def _record(transformer, store):
    def pre(mod, args, kwargs):
        store["inputs"].append(kwargs["hidden_states"].detach().clone())
    h1 = transformer.register_forward_pre_hook(pre, with_kwargs=True)

    def attn_pre(mod, args):
        store["rotary"].append(args[3])
    h2 = transformer.blocks[0].attn1.register_forward_pre_hook(attn_pre)
    return [h1, h2]


@pytest.mark.parametrize("gap", [5, 3])
def test_memory_fixed_through_sampling_and_seen_at_negative_positions(tiny, gap):
    torch.manual_seed(1)
    M, F, h, w = 2, 9, 4, 4
    T = 3
    memory = torch.randn(1, 16, M, h, w)
    shot_cond = torch.randn(1, 16, T, h, w)
    ctx, ctx_null = torch.randn(1, 6, 32), torch.randn(1, 6, 32)
    store = {"inputs": [], "rotary": []}
    hooks = _record(tiny, store)
    try:
        out = _sample(tiny, ctx, memory, shot_cond, F, 1, 4, 3.0, 2.0, gap, "fixed", 3, ctx_null)
    finally:
        for hk in hooks:
            hk.remove()
    assert out.shape == (1, 16, T, h, w)                      # shot frames only
    assert len(store["inputs"]) == 4                           # 4 steps, cond + uncond batched in one forward
    for inp in store["inputs"]:
        assert inp.shape[0] == 2 and inp.shape[2] == M + T
        for b in range(2):
            assert torch.equal(inp[b:b + 1, :16, :M], memory)  # noisy-latent channels: memory held exactly
            assert torch.equal(inp[b:b + 1, 20:, :M], memory)  # y channels: memory latents
        assert inp[:, 16:20, :M].eq(1).all()                   # mask = 1 on memory frames
    # the frequencies the first self-attention used: memory frame m at -(M - m) * gap
    cos, sin = store["rotary"][0]
    r = tiny.rope
    t_dim = r.original.t_dim
    tokens_per_frame = (h // 2) * (w // 2)
    expected_pos = [-(M - m) * gap for m in range(M)] + list(range(T))
    inv = 1.0 / (10000.0 ** (torch.arange(0, t_dim, 2, dtype=torch.float64) / t_dim))
    for f, pos in enumerate(expected_pos):
        want = torch.cos(pos * inv).repeat_interleave(2).float()
        got = cos[0, f * tokens_per_frame, 0, :t_dim]
        assert torch.allclose(got, want, atol=1e-6), (f, pos)
    assert r.last_frame_positions.tolist() == expected_pos
    assert r.frame_positions is None                           # context restored after sampling


def test_renoise_mode_holds_memory_on_its_noise_trajectory(tiny):
    torch.manual_seed(4)
    M, T = 2, 2
    memory = torch.randn(1, 16, M, 4, 4)
    store = {"inputs": [], "rotary": []}
    hooks = _record(tiny, store)
    try:
        _sample(tiny, torch.randn(1, 6, 32), memory, torch.randn(1, 16, T, 4, 4), 5, 1, 3, 3.0, 1.0, mode="renoise",
                seed=9)
    finally:
        for hk in hooks:
            hk.remove()
    noise = torch.randn(1, 16, M + T, 4, 4, generator=torch.Generator().manual_seed(9))
    for inp, sigma in zip(store["inputs"], flow_sigmas(3, 3.0)):
        want = (1 - float(sigma)) * memory + float(sigma) * noise[:, :, :M]
        assert torch.allclose(inp[:, :16, :M], want, atol=1e-6)
        assert torch.equal(inp[:, 20:, :M], memory)


def test_free_mode_lets_memory_region_move(tiny):
    torch.manual_seed(2)
    memory = torch.randn(1, 16, 1, 4, 4)
    shot_cond = torch.randn(1, 16, 2, 4, 4)
    ctx = torch.randn(1, 6, 32)
    store = {"inputs": [], "rotary": []}
    hooks = _record(tiny, store)
    try:
        out = _sample(tiny, ctx, memory, shot_cond, 5, 0, 3, 5.0, 1.0, mode="free")
    finally:
        for hk in hooks:
            hk.remove()
    assert out.shape[2] == 2
    assert not torch.equal(store["inputs"][1][:, :16, :1], memory)


def test_moe_switches_expert_at_boundary(tiny):
    second = tiny_models.wan_transformer(seed=5)
    sig = flow_sigmas(6, 5.0)
    calls = []
    hooks = [m.register_forward_pre_hook(lambda mod, a, k, i=i: calls.append(i), with_kwargs=True)
             for i, m in enumerate((tiny, second))]
    try:
        _sample(tiny, torch.randn(1, 6, 32), torch.randn(1, 16, 1, 4, 4), torch.randn(1, 16, 2, 4, 4), 5, 0, 6, 5.0,
                1.0, transformer_2=second, boundary=0.9)
    finally:
        for h in hooks:
            h.remove()
    want = [0 if float(s) * 1000 >= 900 else 1 for s in sig[:-1]]
    assert calls == want and 0 in calls and 1 in calls


def test_memory_is_noised_like_upstream_by_default_and_held_only_when_asked(tiny):
    """Upstream memory2video.py starts the whole latent, memory frames included, as noise; the node's default
    memory_mode does the same, and holds the memory clean only when the user picks "fixed"."""
    from vibeboard.shots.nodes_story import VBStoryMemShot
    spec = VBStoryMemShot.INPUT_TYPES()["optional"]["memory_mode"]
    assert spec[1]["default"] == "free"
    memory = torch.randn(1, 16, 2, 4, 4)
    free = storymem.conditioning(torch.randn(1, 6, 32), None, memory, torch.randn(1, 16, 2, 4, 4), 5, 1)
    assert free.holds == [] and free.num_ref_frames == 2
    held = storymem.conditioning(torch.randn(1, 6, 32), None, memory, torch.randn(1, 16, 2, 4, 4), 5, 1,
                                 memory_mode="fixed")
    assert len(held.holds) == 1 and torch.equal(held.holds[0].latents[:, :, :2], memory)


def test_unwired_sampler_uses_storymem_upstream_defaults():
    """wan_m2v_A14B.py: sample_shift 4.0, sample_steps 40, sample_guide_scale (3.5, 3.5)."""
    wan = WanHandle.from_modules(transformer=tiny_models.wan_transformer(seed=0), variant="i2v_a14b")
    got = S.settings_or_default(wan, None, **storymem.DEFAULTS)
    assert (got.steps, got.shift, got.cfg, got.scheduler) == (40, 4.0, 3.5, "unipc") and got.cfg_2 is None
    wired = S.SamplerSettings(steps=3)
    assert S.settings_or_default(wan, wired, **storymem.DEFAULTS) is wired


def _storymem_peft_lora(model, rank=4, seed=0):
    """A LoRA in StoryMem's published layout: PEFT on the original WanModel names."""
    from wan_lora_layouts import peft_on_wan_names
    return peft_on_wan_names(model, rank, seed, prefix="base_model.model.")


def test_storymem_lora_keys_map_onto_diffusers_and_scale_rslora(tmp_path):
    """The Wan layer's LoRA loader reads StoryMem's PEFT file (original names) with rsLoRA scaling."""
    from safetensors.torch import save_file
    from vibeboard.models import lora as lora_mod
    model = tiny_models.wan_transformer(seed=0)
    sd = _storymem_peft_lora(model)
    path = str(tmp_path / "storymem_lora.safetensors")
    save_file(sd, path)
    x = torch.randn(1, 36, 2, 4, 4)
    kw = dict(timestep=torch.tensor([500.0]), encoder_hidden_states=torch.randn(1, 5, 32), return_dict=False)
    base = model(hidden_states=x, **kw)[0]
    groups = lora_mod.read_lora(path, alpha=128, rslora=True)
    resolved = lora_mod.resolve(model, groups)
    assert len(resolved) == 2 * 10
    assert "blocks.0.attn1.to_out.0" in resolved and "blocks.1.ffn.net.0.proj" in resolved
    lin = model.blocks[0].attn1.to_q
    inp = torch.randn(3, lin.in_features)
    a = sd["base_model.model.blocks.0.self_attn.q.lora_A.weight"]
    b = sd["base_model.model.blocks.0.self_attn.q.lora_B.weight"]
    want = torch.nn.functional.linear(inp, lin.weight, lin.bias) + 128 / math.sqrt(4) * inp @ a.T @ b.T
    with lora_mod.applied(model, [(groups, 1.0)]):
        assert torch.allclose(lin(inp), want, atol=1e-3)
        assert not torch.allclose(model(hidden_states=x, **kw)[0], base, atol=1e-3)
    assert torch.equal(model(hidden_states=x, **kw)[0], base)


def test_batched_cfg_equals_two_forwards(tiny):
    from vibeboard.wan.conditioning import WanConditioning
    y = storymem.build_condition(torch.randn(1, 16, 2, 4, 4), torch.randn(1, 16, 2, 4, 4), 5, 1)
    x = torch.randn(1, 16, 4, 4, 4)
    cond = WanConditioning(prompt_embeds=torch.randn(1, 6, 32), negative_embeds=torch.randn(1, 6, 32),
                           concat_latents=y)
    t = torch.tensor([700.0])
    with rope.frame_positions(tiny, rope.memory_frame_positions(2, 2, 5)):
        a = S.guided(tiny, x, t, cond, 4.0, torch.float32, batch_cfg=True)
        b = S.guided(tiny, x, t, cond, 4.0, torch.float32, batch_cfg=False)
    assert torch.allclose(a, b, atol=1e-5)


def test_per_token_timesteps_zero_on_clean_tokens(tiny):
    """Wan2.2 TI2V-style: held-clean frames (e.g. memory/reference latents) get timestep 0 per token."""
    from vibeboard.wan.conditioning import WanConditioning
    model = tiny_models.wan_transformer(in_channels=16)
    seen = []
    hook = model.register_forward_pre_hook(lambda m, a, k: seen.append(k["timestep"].clone()), with_kwargs=True)
    clean = torch.zeros(1, 3, 4, 4)
    clean[:, 0] = 1
    try:
        S.predict(model, torch.randn(1, 16, 3, 4, 4), torch.tensor([600.0]),
                  torch.randn(1, 6, 32), WanConditioning(prompt_embeds=None, clean_token_mask=clean), torch.float32)
    finally:
        hook.remove()
    ts = seen[0].view(1, 3, 2, 2)
    assert ts[:, 0].eq(0).all() and ts[:, 1:].eq(600.0).all()
