"""The sampler's `attention` setting puts our kernels on the Wan blocks' self-attention only (Triton's CPU
interpreter runs them here); cross-attention, masked calls and processors other code installed keep SDPA."""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before the kernels are defined: they run on CPU tensors

import pytest
import torch

pytest.importorskip("triton")

from diffusers.models.transformers.transformer_wan import WanAttnProcessor  # noqa: E402

from vibeboard.common.runtime import NodeInputError  # noqa: E402
from vibeboard.models import tiny  # noqa: E402
from vibeboard.wan import nodes as wan_nodes  # noqa: E402
from vibeboard.wan import sampler as S  # noqa: E402
from vibeboard.wan.attention import configs, processor  # noqa: E402
from vibeboard.wan.conditioning import WanConditioning  # noqa: E402
from vibeboard.wan.handle import WanHandle  # noqa: E402


def tiny_wan():
    """The tiny Wan T2V config with 64-channel heads (the kernels take head dim 64 or 128), in bf16 on the CPU."""
    model = tiny.build_transformer("t2v", 0, attention_head_dim=64).to(torch.bfloat16)
    from vibeboard.models import vram
    manager = vram.VramManager(budget_bytes=1 << 30, device="cpu", pin=False)
    return WanHandle.from_modules(manager=manager, dtype=torch.bfloat16, transformer=model), model


def conditioning():
    g = torch.Generator().manual_seed(7)
    return WanConditioning(prompt_embeds=torch.randn(1, 8, 32, generator=g),
                           negative_embeds=torch.randn(1, 8, 32, generator=g))


def run(wan, attention):
    settings = S.SamplerSettings(steps=2, cfg=3.0, seed=3, attention=attention)
    return S.sample(wan, conditioning(), settings, (1, 16, 3, 4, 6), normalized=True)


def rel(a, b):
    return float((a - b).norm() / b.norm())


def test_triton_attention_samples_like_sdpa_and_runs_the_kernel_on_self_attention(monkeypatch):
    wan, model = tiny_wan()
    calls = []
    real = processor.run_kernel
    monkeypatch.setattr(processor, "run_kernel", lambda q, k, v, kind: (calls.append((q.shape, kind)),
                                                                         real(q, k, v, kind))[1])
    ref = run(wan, "sdpa")
    assert not calls
    out = run(wan, "triton")
    # 2 blocks × 2 steps, cond + uncond batched: one call per block per step, all self-attention (3·2·3 tokens)
    assert len(calls) == 4 and {c[0] for c in calls} == {torch.Size([2, 18, 2, 64])}
    assert {c[1] for c in calls} == {"triton"}
    assert rel(out, ref) < 2e-2                          # bf16 rounding (a wrong attention gives ≈ 0.12)
    assert all(type(m.processor) is WanAttnProcessor for m in processor.self_attention_modules(model))


def test_fp8_attention_samples_close_to_sdpa():
    wan, _ = tiny_wan()
    assert rel(run(wan, "fp8"), run(wan, "sdpa")) < 5e-2


def test_cross_attention_masks_and_other_processors_keep_their_path(monkeypatch):
    _, model = tiny_wan()
    calls = []
    real = processor.run_kernel
    monkeypatch.setattr(processor, "run_kernel", lambda q, k, v, kind: (calls.append(kind), real(q, k, v, kind))[1])
    owned = WanAttnProcessor()

    class Custom(WanAttnProcessor):  # e.g. a research model's own self-attention
        pass

    custom = Custom()
    model.blocks[1].attn1.set_processor(custom)
    with processor.kernel_attention(model, "triton", "cpu") as installed:
        assert len(installed) == 1 and isinstance(model.blocks[0].attn1.processor, processor.WanKernelSelfAttention)
        assert model.blocks[1].attn1.processor is custom
        assert all(type(b.attn2.processor) is WanAttnProcessor for b in model.blocks)
        attn = model.blocks[0].attn1
        x = torch.randn(1, 10, attn.inner_dim, dtype=torch.bfloat16)
        seen = []
        stock = installed[0].fallback
        installed[0].fallback = lambda *a, **k: (seen.append(a[3]), owned(*a, **k))[1]
        attn(x, attention_mask=torch.ones(1, 1, 10, 10, dtype=torch.bool))
        assert len(seen) == 1 and seen[0] is not None                          # masked: stock processor
        attn(x)
        assert len(seen) == 1 and calls == ["triton"]                         # plain: the kernel
        installed[0].fallback = stock
    assert type(model.blocks[0].attn1.processor) is WanAttnProcessor and model.blocks[1].attn1.processor is custom
    with processor.kernel_attention(model, "triton", "cpu") as again:      # the same object: no recompiles
        assert again[0] is installed[0]


def test_auto_stays_on_sdpa_until_the_kernel_is_measured_faster():
    assert S.AUTO_KERNEL is None
    assert S.self_attention_kernel("auto", torch.device("cpu")) is None
    assert S.self_attention_kernel("cudnn", torch.device("cpu")) is None
    assert S.self_attention_kernel("fp8", torch.device("cpu")) == "fp8"


def test_explicit_kernel_without_triton_or_cuda_is_a_clear_error(monkeypatch):
    _, model = tiny_wan()
    monkeypatch.setattr(configs, "interpreting", lambda: False)
    monkeypatch.setattr(processor, "interpreting", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="attention='triton'.*CUDA"):
        with processor.kernel_attention(model, "triton", "cpu"):
            pass
    assert type(model.blocks[0].attn1.processor) is WanAttnProcessor
    with pytest.raises(NodeInputError) as err:
        wan_nodes.VBWanSamplerSettings().make(30, 5.0, 5.0, "unipc", 0, attention="fp8")
    assert err.value.input_name == "attention" and "CUDA" in str(err.value)
    wan_nodes.VBWanSamplerSettings().make(30, 5.0, 5.0, "unipc", 0, attention="auto")   # SDPA needs neither


def test_kernel_op_has_a_fake_implementation_for_torch_compile():
    from torch._subclasses.fake_tensor import FakeTensorMode
    with FakeTensorMode():
        q = torch.empty(2, 300, 12, 128, dtype=torch.bfloat16)
        out = processor.run_kernel(q, q, q, "triton")
    assert out.shape == q.shape and out.dtype == q.dtype


def test_compiled_blocks_trace_the_kernel_processor_in_one_graph():
    """compile=True compiles the blocks; the kernel is a custom op, so dynamo traces around it (fullgraph)."""
    _, model = tiny_wan()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 16, 3, 4, 6, generator=g).bfloat16()
    text = torch.randn(1, 8, 32, generator=g).bfloat16()
    t = torch.tensor([500.0])
    with torch.no_grad(), processor.kernel_attention(model, "triton", "cpu"):
        eager = model(hidden_states=x, timestep=t, encoder_hidden_states=text, return_dict=False)[0]
        for block in model.blocks:
            block.compile(backend="eager", fullgraph=True)
        compiled = model(hidden_states=x, timestep=t, encoder_hidden_states=text, return_dict=False)[0]
    torch.testing.assert_close(compiled, eager, rtol=0, atol=0)
