"""Step-distilled Wan LoRAs (lightx2v / CausVid style: low-rank pairs + `diff`/`diff_b` full deltas for biases,
norms and the patch embedding) load in every naming they are shared in and merge to the same weights; with the
"lightx2v 4-step" preset (CFG 1) the sampler runs one DiT forward per step, no unconditional pass."""
import os

import torch
from safetensors.torch import save_file

from vibeboard.common import runtime
from vibeboard.models import lora as lora_mod
from vibeboard.models import tiny, wan_keys
from vibeboard.wan import conditioning as C
from vibeboard.wan import sampler as S
from vibeboard.wan.handle import WanHandle
from vibeboard.wan.nodes import VBWanLoRA, VBWanSamplerSettings

RANK, ALPHA = 4, 8.0      # alpha / rank = 2: a power of two, so folding it into lora_A is exact


def _truth(model, seed=0):
    """{diffusers name: parts} for every kind of key a distilled LoRA carries."""
    g = torch.Generator().manual_seed(seed)
    rnd = lambda *shape: torch.randn(*shape, generator=g) * 0.05   # noqa: E731
    truth = {}
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Linear):          # every Linear: blocks, embedders, head — pair + bias delta
            truth[name] = {"down": rnd(RANK, m.in_features), "up": rnd(m.out_features, RANK), "diff_b": rnd(m.out_features)}
        elif "norm" in name.rpartition(".")[2] and getattr(m, "weight", None) is not None:
            truth[name] = {"diff": rnd(*m.weight.shape)}
            if getattr(m, "bias", None) is not None:
                truth[name]["diff_b"] = rnd(*m.bias.shape)
    pe = model.patch_embedding
    truth["patch_embedding"] = {"diff": rnd(*pe.weight.shape), "diff_b": rnd(*pe.bias.shape)}
    truth["blocks.0.scale_shift_table"] = {"diff": rnd(*model.blocks[0].scale_shift_table.shape)}
    return truth


def _write(truth, fmt: str) -> dict:
    sd = {}
    for name, parts in truth.items():
        is_param = name.endswith("scale_shift_table")
        wan = wan_keys.diffusers_to_wan_key(name) if is_param else wan_keys.diffusers_module_to_wan(name)
        if fmt == "kohya":          # ComfyUI / kohya: lora_unet_<wan name with _>.lora_down/up + alpha
            base, down, up = "lora_unet_" + wan.replace(".", "_"), "lora_down.weight", "lora_up.weight"
        elif fmt == "wan_lora_A":   # original Wan names, PEFT-style pair (lightx2v's own files)
            base, down, up = "diffusion_model." + wan, "lora_A.weight", "lora_B.weight"
        elif fmt == "wan_lora_down":  # original Wan names, kohya-style pair (Kijai's extracted lightx2v files)
            base, down, up = "diffusion_model." + wan, "lora_down.weight", "lora_up.weight"
        else:                       # diffusers / PEFT: alpha folded into lora_A, a bias delta is lora_B.bias
            base, down, up = "transformer." + name, "lora_A.weight", "lora_B.weight"
        if "down" in parts:
            if fmt == "diffusers":
                sd[f"{base}.{down}"] = parts["down"] * (ALPHA / RANK)
            else:
                sd[f"{base}.{down}"], sd[f"{base}.alpha"] = parts["down"], torch.tensor(ALPHA)
            sd[f"{base}.{up}"] = parts["up"]
        if "diff" in parts:
            sd[f"{base}.diff"] = parts["diff"]
        if "diff_b" in parts:
            sd[f"{base}.lora_B.bias" if fmt == "diffusers" and "down" in parts else f"{base}.diff_b"] = parts["diff_b"]
    return sd


FORMATS = ("kohya", "wan_lora_A", "wan_lora_down", "diffusers")


def test_every_naming_of_a_distilled_lora_merges_to_the_same_weights(tmp_path):
    model = tiny.build_transformer("i2v", 0)
    base = {k: v.clone() for k, v in model.state_dict().items()}
    truth = _truth(model)
    merged = {}
    for fmt in FORMATS:
        path = str(tmp_path / f"{fmt}.safetensors")
        save_file(_write(truth, fmt), path)
        groups = lora_mod.read_lora(path)
        assert lora_mod.check_fits(model, groups, strict=True) == len(truth)
        with lora_mod.applied(model, [(path, 0.75)]):
            merged[fmt] = {k: v.clone() for k, v in model.state_dict().items()}
        for k, v in model.state_dict().items():           # removed again, bit for bit
            assert torch.equal(v, base[k]), (fmt, k)
    for fmt in FORMATS[1:]:
        for k in base:
            assert torch.equal(merged[fmt][k], merged["kohya"][k]), (fmt, k)
    # and the merge is the deltas the file describes, at strength 0.75
    got = merged["kohya"]
    q = "blocks.1.attn2.add_k_proj"
    p = truth[q]
    torch.testing.assert_close(got[q + ".weight"], base[q + ".weight"] + 0.75 * (ALPHA / RANK) * p["up"] @ p["down"])
    torch.testing.assert_close(got[q + ".bias"], base[q + ".bias"] + 0.75 * p["diff_b"])
    n = "blocks.0.norm2"        # the cross-attention norm (original name norm3): weight and bias deltas
    torch.testing.assert_close(got[n + ".weight"], base[n + ".weight"] + 0.75 * truth[n]["diff"])
    torch.testing.assert_close(got[n + ".bias"], base[n + ".bias"] + 0.75 * truth[n]["diff_b"])
    torch.testing.assert_close(got["blocks.0.attn1.norm_q.weight"],
                               base["blocks.0.attn1.norm_q.weight"] + 0.75 * truth["blocks.0.attn1.norm_q"]["diff"])
    torch.testing.assert_close(got["patch_embedding.weight"],
                               base["patch_embedding.weight"] + 0.75 * truth["patch_embedding"]["diff"])
    torch.testing.assert_close(got["blocks.0.scale_shift_table"], base["blocks.0.scale_shift_table"]
                               + 0.75 * truth["blocks.0.scale_shift_table"]["diff"])
    assert not torch.equal(got["proj_out.bias"], base["proj_out.bias"])   # head.head.diff_b


def test_a_bias_delta_that_does_not_fit_is_refused():
    model = tiny.build_transformer("t2v", 0)
    bad = {"diffusion_model.blocks.0.self_attn.q.diff_b": torch.zeros(7)}
    try:
        lora_mod.check_fits(model, lora_mod.parse_lora(bad))
    except ValueError as exc:
        assert "bias" in str(exc)
    else:
        raise AssertionError("a 7-long bias delta for a 32-wide layer was accepted")


def test_distilled_lora_at_cfg_1_runs_one_forward_per_step(tmp_path, monkeypatch):
    monkeypatch.setattr(runtime, "_dirs", {k: str(tmp_path / k) for k in ("output", "input", "temp", "models")})
    monkeypatch.delenv("VIBEBOARD_MODELS_DIR", raising=False)
    os.makedirs(tmp_path / "models" / "loras")
    model = tiny.build_transformer("t2v", 0)
    save_file(_write(_truth(model), "wan_lora_down"), str(tmp_path / "models" / "loras" / "lightx2v.safetensors"))
    wan = WanHandle.from_modules(transformer=model, vae=tiny.build_vae(0))
    wan, = VBWanLoRA().apply(wan, "lightx2v.safetensors", 1.0)
    settings, = VBWanSamplerSettings().make(30, 5.0, 3.0, "unipc", 7, preset="lightx2v 4-step")
    g = torch.Generator().manual_seed(0)
    cond = C.WanConditioning(prompt_embeds=torch.randn(1, 8, 32, generator=g),
                             negative_embeds=torch.randn(1, 8, 32, generator=g))   # present, but CFG 1
    batches = []
    hook = model.register_forward_hook(lambda m, args, kwargs, out: batches.append(kwargs["hidden_states"].shape[0]),
                                       with_kwargs=True)
    stats = {}
    try:
        out = S.sample(wan, cond, settings, (1, 16, 2, 4, 4), normalized=True, stats=stats)
    finally:
        hook.remove()
    assert batches == [1, 1, 1, 1]                                     # 4 steps, cond only
    assert stats["forwards"] == stats["rows"] == 4 and torch.isfinite(out).all()
    plain = S.sample(WanHandle.from_modules(transformer=model, vae=tiny.build_vae(0)), cond, settings,
                     (1, 16, 2, 4, 4), normalized=True)
    assert not torch.equal(out, plain)                                 # the LoRA was in the forward
