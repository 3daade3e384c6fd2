"""fp8 GEMMs for the Wan DiT (opt-in, lossy): per-channel e4m3 weights × per-token e4m3 activations, applied to a
copy of the model (the cached model is never changed); the CPU reference path has the GPU path's numerics."""
import pytest
import torch

from vibeboard.models import tiny
from vibeboard.models.fp8 import Fp8Linear
from vibeboard.wan import conditioning as C
from vibeboard.wan import fp8_gemm
from vibeboard.wan import sampler as S
from vibeboard.wan.handle import WanHandle
from vibeboard.wan.nodes import VBWanSamplerSettings


def _forward(model, x, t, text):
    with torch.no_grad():
        return model(hidden_states=x, timestep=t, encoder_hidden_states=text, return_dict=False)[0]


def test_quantize_rows_has_one_scale_per_row_and_bounded_error():
    x = torch.randn(7, 64) * torch.logspace(-3, 3, 7).unsqueeze(1)   # rows six decades apart
    q, scale = fp8_gemm.quantize_rows(x)
    assert q.dtype == torch.float8_e4m3fn and scale.shape == (7, 1)
    back = q.float() * scale
    rel = (back - x).norm(dim=1) / x.norm(dim=1)
    assert rel.max() < 4e-2                                  # e4m3: 3 mantissa bits, every row at its own scale
    assert torch.allclose(back.abs().amax(dim=1), x.abs().amax(dim=1), rtol=1e-6)  # the row max is exact


def test_fp8_linear_matches_the_dequantised_product():
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 48)
    fp8 = fp8_gemm.Fp8GemmLinear.from_linear(lin)
    assert fp8.weight.dtype == torch.float8_e4m3fn and fp8.weight_scale.shape == (1, 48)
    x = torch.randn(2, 5, 64)
    with torch.no_grad():
        y = fp8(x)
    assert y.shape == (2, 5, 48) and y.dtype == x.dtype
    xq, xs = fp8_gemm.quantize_rows(x.reshape(-1, 64))
    want = (xq.float() * xs) @ fp8.dequantized().t() + lin.bias
    torch.testing.assert_close(y.reshape(-1, 48), want)
    ref = lin(x).detach()
    assert 1e-3 < float((y - ref).norm() / ref.norm()) < 6e-2   # one layer: both operands rounded to e4m3


def test_scaled_mm_variants_match_the_reference_product():
    """The fused call as the CUDA path makes it (row scales [M,1], column scales [1,N], column-major weight, bf16
    out), run by torch's own CPU `_scaled_mm`: each variant (bias in the epilogue, added, tokens padded to 16)."""
    if not hasattr(torch, "_scaled_mm"):
        pytest.skip("no torch._scaled_mm")
    torch.manual_seed(0)
    x, w, bias = torch.randn(20, 64, dtype=torch.bfloat16), torch.randn(48, 64), torch.randn(48, dtype=torch.bfloat16)
    xq, xs = fp8_gemm.quantize_rows(x)
    wq, ws = fp8_gemm.quantize_rows(w)
    want = (xq.float() * xs) @ (wq.float() * ws).t() + bias.float()
    for variant in ("bias", "add", "pad"):
        try:
            got = fp8_gemm.scaled_mm(xq, xs, wq, ws.reshape(1, -1), bias, torch.bfloat16, variant)
        except (RuntimeError, NotImplementedError):
            pytest.skip("this torch build has no CPU fp8 _scaled_mm")
        assert got.shape == (20, 48) and got.dtype == torch.bfloat16
        assert float((got.float() - want).norm() / want.norm()) < 5e-3, variant


def test_fused_forward_path_agrees_with_the_reference_path(monkeypatch):
    if not hasattr(torch, "_scaled_mm"):
        pytest.skip("no torch._scaled_mm")
    torch.manual_seed(0)
    fp8 = fp8_gemm.Fp8GemmLinear.from_linear(torch.nn.Linear(64, 48).to(torch.bfloat16))
    x = torch.randn(2, 9, 64, dtype=torch.bfloat16)
    with torch.no_grad():
        ref = fp8(x)                                        # CPU: the reference matmul
        monkeypatch.setattr(fp8_gemm, "fused_variant", lambda device: "bias")
        try:
            fused = fp8(x)
        except (RuntimeError, NotImplementedError):
            pytest.skip("this torch build has no CPU fp8 _scaled_mm")
    assert fused.shape == ref.shape == (2, 9, 48) and fused.dtype == torch.bfloat16
    assert float((fused.float() - ref.float()).norm() / ref.float().norm()) < 1e-2


def test_fp8_copy_converts_only_block_gemms_and_leaves_the_model_untouched():
    model = tiny.build_transformer("i2v", 0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    copy, n = fp8_gemm.fp8_copy(model)
    names = fp8_gemm.target_names(model)
    # per block: self q/k/v/o, cross q/k/v/o + image k/v, ffn in/out
    assert n == len(names) == model.config.num_layers * 12
    mods = dict(copy.named_modules())
    assert all(isinstance(mods[name], fp8_gemm.Fp8GemmLinear) for name in names)
    for kept in ("proj_out", "condition_embedder.text_embedder.linear_1", "condition_embedder.time_proj",
                 "blocks.0.norm2", "patch_embedding"):
        assert mods[kept] is dict(model.named_modules())[kept]          # shared, not converted
    assert copy.blocks[0].scale_shift_table is model.blocks[0].scale_shift_table
    assert all(type(m) is not fp8_gemm.Fp8GemmLinear for m in model.modules())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_hooks_installed_on_the_copy_stay_off_the_model():
    model = tiny.build_transformer("t2v", 0)
    seen = []
    model.register_forward_pre_hook(lambda m, args: seen.append("model"))
    copy, _ = fp8_gemm.fp8_copy(model)
    copy.register_forward_pre_hook(lambda m, args: seen.append("copy"))
    copy.blocks[0].register_forward_hook(lambda m, args, out: seen.append("copy block"))
    x, t, text = torch.randn(1, 16, 2, 4, 4), torch.tensor([500.0]), torch.randn(1, 8, 32)
    _forward(model, x, t, text)
    assert seen == ["model"]
    seen.clear()
    _forward(copy, x, t, text)
    assert seen == ["model", "copy", "copy block"]       # the copy keeps the model's hooks, adds its own


def test_fp8_copy_forward_is_close_to_the_original():
    model = tiny.build_transformer("t2v", 0)
    copy, _ = fp8_gemm.fp8_copy(model)
    g = torch.Generator().manual_seed(1)
    x, text = torch.randn(2, 16, 3, 8, 8, generator=g), torch.randn(2, 8, 32, generator=g)
    for t in (900.0, 500.0, 100.0):
        ref = _forward(model, x, torch.tensor([t, t]), text)
        got = _forward(copy, x, torch.tensor([t, t]), text)
        rel = float((got - ref).norm() / ref.norm())
        assert 1e-4 < rel < 3e-2, (t, rel)


def test_fp8_storage_weights_are_used_without_a_second_rounding():
    """A Linear already stored in e4m3 (ComfyUI fp8-scaled files, dtype fp8_e4m3fn) keeps its exact weights."""
    torch.manual_seed(0)
    stored = Fp8Linear(torch.nn.Linear(32, 16))
    fp8 = fp8_gemm.Fp8GemmLinear.from_linear(stored)
    assert torch.equal(fp8.weight.view(torch.uint8), stored.weight.data.view(torch.uint8))
    torch.testing.assert_close(fp8.dequantized(), stored.dequantized(torch.float32))


def _handle(model):
    vae = tiny.build_vae(0)
    return WanHandle.from_modules(transformer=model, vae=vae)


def test_sampler_precision_fp8_runs_on_a_copy_and_reports_it():
    model = tiny.build_transformer("t2v", 0)
    wan = _handle(model)
    g = torch.Generator().manual_seed(0)
    cond = C.WanConditioning(prompt_embeds=torch.randn(1, 8, 32, generator=g),
                             negative_embeds=torch.randn(1, 8, 32, generator=g))
    shape = (1, 16, 2, 4, 4)
    ref = S.sample(wan, cond, S.SamplerSettings(steps=3, cfg=3.0), shape, normalized=True)
    stats = {}
    got = S.sample(wan, cond, S.SamplerSettings(steps=3, cfg=3.0, precision="fp8"), shape, normalized=True,
                   stats=stats)
    assert stats["precision"] == "fp8" and stats["fp8_layers"] == 20 and stats["fp8_fused"] is False
    assert S.LAST_STATS["precision"] == "fp8"
    assert not torch.equal(got, ref) and float((got - ref).norm() / ref.norm()) < 5e-2
    assert all(type(m) is not fp8_gemm.Fp8GemmLinear for m in model.modules())   # cached model untouched
    again = S.sample(wan, cond, S.SamplerSettings(steps=3, cfg=3.0), shape, normalized=True)
    assert torch.equal(again, ref)
    with pytest.raises(ValueError, match="precision"):
        S.sample(wan, cond, S.SamplerSettings(steps=1, precision="int4"), shape)


def test_settings_node_precision_and_step_cache_inputs():
    node = VBWanSamplerSettings()
    opts = VBWanSamplerSettings.INPUT_TYPES()["optional"]
    assert opts["precision"][0] == ["bf16", "fp8"] and opts["step_cache"][1]["default"] == 0.0
    s, = node.make(30, 5.0, 5.0, "unipc", 0, precision="fp8", step_cache=0.1)
    assert (s.precision, s.step_cache, s.steps, s.cfg) == ("fp8", 0.1, 30, 5.0)
    fast, = node.make(30, 5.0, 3.0, "unipc", 0, preset="lightx2v 4-step")
    assert (fast.steps, fast.cfg, fast.shift, fast.scheduler) == (4, 1.0, 5.0, "flow_euler")
    from vibeboard.common.runtime import NodeInputError
    with pytest.raises(NodeInputError, match="step_cache"):
        node.make(30, 5.0, 5.0, "unipc", 0, step_cache=2.0)


TRITON_CHECK = """
import sys, torch
sys.path[:0] = [sys.argv[1]]
from vibeboard.wan import fp8_gemm
kernel = fp8_gemm._triton_kernel()
g = torch.Generator().manual_seed(0)
for m, k in ((3, 64), (2, 5000)):        # 5000 > one 4096 block: the masked tail of a second pass
    x = (torch.randn(m, k + 8, generator=g) * torch.logspace(-2, 2, m).unsqueeze(1)).to(torch.bfloat16)[:, :k]
    q, scale = torch.empty((m, k), dtype=torch.float8_e4m3fn), torch.empty((m, 1))
    block = min(4096, 1 << max(4, (k - 1).bit_length()))
    kernel[(m,)](x, q, scale, x.stride(0), q.stride(0), K=k, FP8_MAX=448.0, BLOCK=block)
    ref_q, ref_scale = fp8_gemm.quantize_rows(x)
    torch.testing.assert_close(scale, ref_scale)
    assert (q.float() == ref_q.float()).float().mean() > 0.9, (m, k)
print("ok")
"""


def test_triton_row_quantiser_traces_to_the_same_scales():
    """The CUDA path's one-kernel quantiser, run by Triton's CPU interpreter (a fresh process: the interpreter must
    be chosen before Triton is imported): strides, masks, rows longer than one block. The interpreter's own fp8
    cast mis-rounds values just under a power of two, so only most elements are compared exactly; the benchmark
    checks the kernel against the torch quantiser on the GPU."""
    import os
    import subprocess
    import sys
    pytest.importorskip("triton")
    pack = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "custom_nodes")
    env = dict(os.environ, TRITON_INTERPRET="1")
    done = subprocess.run([sys.executable, "-c", TRITON_CHECK, pack], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_comfy_fp8_scaled_dit_keeps_its_published_weights(tmp_path):
    """A ComfyUI `*_fp8_scaled` DiT loaded with dtype fp8_e4m3fn stores the file's e4m3 weights and scales as they
    are (no dequantise-and-round-again), and precision fp8 multiplies with exactly those."""
    from safetensors.torch import save_file
    from vibeboard.models import loaders, wan_keys
    model = tiny.build_transformer("t2v", 0)
    state = {}
    for k, v in model.state_dict().items():
        key = wan_keys.diffusers_to_wan_key(k)
        if k.startswith("blocks.") and k.endswith(".weight") and v.dim() == 2:
            scale = v.abs().max() / 448.0 * 1.37        # a scale our own requantisation would not pick
            state[key] = (v / scale).to(torch.float8_e4m3fn)
            state[key[:-len("weight")] + "scale_weight"] = scale.reshape(1)
        else:
            state[key] = v
    state["scaled_fp8"] = torch.zeros(0, dtype=torch.float8_e4m3fn)
    path = str(tmp_path / "wan2.1_t2v_tiny_fp8_scaled.safetensors")
    save_file(state, path)
    loaded = loaders.load_wan_transformer(path, "fp8_e4m3fn")
    q = loaded.blocks[1].attn2.to_v
    assert isinstance(q, Fp8Linear)
    assert torch.equal(q.weight.view(torch.uint8), state["blocks.1.cross_attn.v.weight"].view(torch.uint8))
    assert torch.equal(q.scale_weight, state["blocks.1.cross_attn.v.scale_weight"])
    copy, n = fp8_gemm.fp8_copy(loaded)
    g = copy.blocks[1].attn2.to_v
    assert n == 20 and torch.equal(g.weight.view(torch.uint8), q.weight.view(torch.uint8))


def test_fp8_under_block_swap_samples_unchanged_and_says_why(caplog):
    """Block swap moves the DiT's block weights while it runs, so there is no copy to convert: the sampler warns and
    samples as without fp8 (the result is the plain one, and stats say so)."""
    from vibeboard.models import vram
    model = tiny.build_transformer("t2v", 0)
    mgr = vram.VramManager(budget_bytes=1 << 30, device="cpu", pin=False)
    mgr.register("dit", model, mode="blockswap", resident_blocks=1)
    mgr.register("vae", tiny.build_vae(0), mode="resident")
    wan = WanHandle(variant="t2v", keys={"transformer": "dit", "vae": "vae"}, manager=mgr, dtype=torch.float32)
    cond = C.WanConditioning(prompt_embeds=torch.randn(1, 8, 32, generator=torch.Generator().manual_seed(0)))
    plain = S.sample(wan, cond, S.SamplerSettings(steps=2, cfg=1.0), (1, 16, 2, 4, 4), normalized=True)
    stats = {}
    with caplog.at_level("WARNING", logger="vibeboard.wan"):
        got = S.sample(wan, cond, S.SamplerSettings(steps=2, cfg=1.0, precision="fp8"), (1, 16, 2, 4, 4),
                       normalized=True, stats=stats)
    assert mgr.models["dit"].runner is not None                      # it did run with block swap
    assert torch.equal(got, plain) and stats["precision"] == "float32" and "fp8_layers" not in stats
    assert "fully resident" in caplog.text


def test_kept_copy_is_reused_while_the_loras_are_the_same():
    """With compile the sampler keeps the fp8 copy between runs (same module objects: no recompiles), and makes a
    new one when the merged LoRAs change."""
    model = tiny.build_transformer("t2v", 0)
    a, n = fp8_gemm.kept_fp8_copy(model, (("x.safetensors", 1.0, 1.0),))
    b, _ = fp8_gemm.kept_fp8_copy(model, (("x.safetensors", 1.0, 1.0),))
    c, _ = fp8_gemm.kept_fp8_copy(model, (("x.safetensors", 0.5, 1.0),))
    assert a is b and c is not a and n == 20
    key = id(model)
    del model, a, b, c
    import gc
    gc.collect()
    assert key not in fp8_gemm._kept                 # gone with the model
