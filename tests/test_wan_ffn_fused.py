"""wan/ffn_fused.py: the Wan FFN's up-projection + GELU(tanh) as one GEMM with a GELU epilogue, installed by the
sampler for a run and removed after, reusing the same module objects; off CUDA (and wherever something else owns
the projection) the original two-pass path runs."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from vibeboard.models import tiny
from vibeboard.models import vram
from vibeboard.wan import ffn_fused as FF
from vibeboard.wan import sampler as S
from vibeboard.wan.conditioning import WanConditioning
from vibeboard.wan.handle import WanHandle


def tiny_wan():
    return tiny.build_transformer("t2v", 0).to(torch.bfloat16)


def _forward(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 16, 3, 4, 6, generator=g).bfloat16()
    text = torch.randn(1, 8, 32, generator=g).bfloat16()
    with torch.no_grad():
        return model(hidden_states=x, timestep=torch.tensor([500.0]), encoder_hidden_states=text,
                     return_dict=False)[0]


def test_swapped_in_for_the_run_and_restored_after_with_the_same_objects_each_time(monkeypatch):
    monkeypatch.setattr(FF, "enabled", lambda device: True)
    model = tiny_wan()
    originals = [b.ffn.net[0] for b in model.blocks]
    keys = list(model.state_dict())
    with FF.fused_ffn(model, "cpu") as n:
        assert n == len(model.blocks)
        first = [b.ffn.net[0] for b in model.blocks]
        assert all(type(m) is FF.FusedGeluProjection and m.proj is o.proj for m, o in zip(first, originals))
        assert list(model.state_dict()) == keys          # same parameter names: LoRAs / fp8 copies see no change
    assert [b.ffn.net[0] for b in model.blocks] == originals
    with FF.fused_ffn(model, "cpu"):
        assert [b.ffn.net[0] for b in model.blocks] == first   # cached: compiled blocks do not recompile per run


def test_off_cuda_the_original_path_runs_bit_exactly(monkeypatch):
    monkeypatch.setattr(FF, "enabled", lambda device: True)
    model = tiny_wan()
    plain = _forward(model)
    with FF.fused_ffn(model, "cpu"):
        fused = _forward(model)
    torch.testing.assert_close(fused, plain, rtol=0, atol=0)


def test_fused_branch_is_linear_plus_bias_then_the_epilogue_activation(monkeypatch):
    # On CPU torch's _addmm_activation applies the exact GELU (CUDA's applies tanh, Wan's): the plumbing —
    # flattening, weight transpose, bias, output shape — is what this checks, against the same activation.
    monkeypatch.setattr(FF, "_epilogue_is_tanh_gelu", lambda x: True)
    lin = nn.Linear(16, 24).to(torch.bfloat16)
    original = type("GELU", (nn.Module,), {})()
    original.proj, original.approximate = lin, "tanh"
    fused = FF.FusedGeluProjection(original)
    x = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(0)).bfloat16()
    out = fused(x)
    ref = F.gelu(F.linear(x.float(), lin.weight.float(), lin.bias.float()))
    assert out.shape == (2, 5, 24) and out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, rtol=2e-2, atol=2e-2)
    # a hook on the projection (offloading moves its weight there) or another dtype: the module's own path
    lin.register_forward_pre_hook(lambda m, a: None)
    torch.testing.assert_close(fused(x), F.gelu(lin(x), approximate="tanh"), rtol=0, atol=0)


def test_sampler_installs_it_on_resident_models_only(monkeypatch):
    monkeypatch.setattr(FF, "enabled", lambda device: True)
    model = tiny_wan()
    manager = vram.VramManager(budget_bytes=1 << 30, device="cpu", pin=False)
    wan = WanHandle.from_modules(manager=manager, dtype=torch.bfloat16, transformer=model)
    g = torch.Generator().manual_seed(7)
    cond = WanConditioning(prompt_embeds=torch.randn(1, 8, 32, generator=g),
                           negative_embeds=torch.randn(1, 8, 32, generator=g))
    stats = {}
    S.sample(wan, cond, S.SamplerSettings(steps=1, cfg=3.0, seed=3), (1, 16, 3, 4, 6), normalized=True,
             stats=stats)
    assert stats["fused_ffn"] == len(model.blocks)
    assert all(type(b.ffn.net[0]).__name__ == "GELU" for b in model.blocks)    # removed after the run


def test_not_enabled_off_cuda_or_when_switched_off(monkeypatch):
    assert not FF.enabled("cpu")
    monkeypatch.setenv(FF.ENV, "0")
    assert not FF.enabled("cuda")
