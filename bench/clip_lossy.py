"""The opt-in lossy modes of the Wan sampler, measured against bf16 on the models `clip_e2e.py` wrote (issue 12).

Called by `clip_e2e.py --lossy` (after its own runs, same process, same cached modules):
1. microbench: one DiT forward at the clip's shape (CFG batch when cfg > 1), bf16 vs fp8 GEMMs: median time of a
   few calls, and the per-forward relative error ‖fp8 − bf16‖ / ‖bf16‖ of the DiT output on the same latents and
   timestep, averaged over five timesteps;
2. sampling `--lossy-steps` steps: bf16 (reference), fp8, step cache, fp8 + step cache: time per step, DiT
   forwards, skip ratio, the step cache's per-forward error (its estimate vs the computed forward at the steps it
   skipped, from an audited run) and the final latents' relative error against the bf16 run.
"""
from __future__ import annotations

import time

import torch

from bench_common import md_table, rel_err, sync, timed

TIMESTEPS = (999.0, 750.0, 500.0, 250.0, 50.0)


def forward_microbench(handle, cond, shape, cfg: float, repeat: int) -> dict:
    """One DiT forward, bf16 vs fp8 GEMMs, same inputs."""
    from vibeboard.wan import fp8_gemm
    from vibeboard.wan import sampler as S
    g = torch.Generator("cpu").manual_seed(0)
    x = torch.randn(shape, generator=g).to(handle.device)
    embeds = cond.prompt_embeds
    if cfg > 1:   # cond + uncond in one batch, as the sampler runs it
        x, embeds = torch.cat([x, x]), torch.cat([cond.prompt_embeds, cond.negative_embeds])
    res = {}
    with handle.use("transformer") as dit, S.attention_context("auto", handle.device), torch.no_grad():
        t0 = time.perf_counter()
        fp8, n = fp8_gemm.fp8_copy(dit)
        sync()
        res["fp8 quantise weights (s)"] = time.perf_counter() - t0
        res["fp8 layers"] = n
        res["fp8 _scaled_mm variant"] = fp8_gemm.fused_variant(handle.device)   # None: the reference matmul
        # the one-kernel activation quantiser (Triton on CUDA) against the torch reference, on token-shaped input
        tokens = torch.randn(4096, dit.config.num_attention_heads * dit.config.attention_head_dim,
                             generator=g).to(handle.device, handle.dtype)
        q_fast, s_fast = fp8_gemm.quantize_rows_fast(tokens)
        q_ref, s_ref = fp8_gemm.quantize_rows(tokens)
        res["quantiser: scales equal"] = bool(torch.equal(s_fast, s_ref))
        res["quantiser: fp8 codes equal (share)"] = float((q_fast.view(torch.uint8) == q_ref.view(torch.uint8))
                                                          .float().mean())
        refs = {t: S.predict(dit, x, torch.tensor([t]), embeds, cond, handle.dtype) for t in TIMESTEPS}
        for name, model, attention in _forward_modes(dit, fp8, handle.device):
            with attention():
                run = lambda m=model: S.predict(m, x, torch.tensor([500.0]), embeds, cond, handle.dtype)  # noqa
                # timed's warm-up call takes the cuDNN plans, cuBLAS/cuBLASLt heuristics, first fp8 quantisation
                res[f"{name} forward (s)"], _ = timed(run, repeat)
                if name == "bf16":
                    continue
                errs = [rel_err(S.predict(model, x, torch.tensor([t]), embeds, cond, handle.dtype), refs[t])
                        for t in TIMESTEPS]
            res[f"{name} rel. err per forward"] = sum(errs) / len(errs)
            res[f"{name} rel. err per timestep"] = [round(e, 5) for e in errs]
        del fp8
    for name in FORWARD_MODES[1:]:
        if f"{name} forward (s)" in res:
            res[f"{name}/bf16 forward"] = res[f"{name} forward (s)"] / res["bf16 forward (s)"]
    return res


FORWARD_MODES = ("bf16", "fp8", "fp8 + fp8 attention")


def _fp8_attention_available(device) -> bool:
    """The attention helper's fp8 (8-bit QK/PV) Triton kernel, where it runs (CUDA with Triton; not its CPU
    interpreter, whose timings mean nothing)."""
    if torch.device(device).type != "cuda":
        return False
    try:
        from vibeboard.wan.attention.processor import unavailable_reason
    except ImportError:
        return False
    return unavailable_reason("fp8", device) is None


def _forward_modes(dit, fp8, device):
    """(name, model, attention context factory): bf16; fp8 GEMMs; fp8 GEMMs + fp8 attention (issue 12's fp8 step)."""
    from contextlib import nullcontext
    modes = [("bf16", dit, nullcontext), ("fp8", fp8, nullcontext)]
    if _fp8_attention_available(device):
        from vibeboard.wan.attention.processor import kernel_attention
        modes.append(("fp8 + fp8 attention", fp8, lambda: kernel_attention(fp8, "fp8", device)))
    return modes


def gemm_microbench(tokens: int, dim: int, ffn: int, device, dtype, repeat: int) -> dict:
    """The FFN up-projection alone (tokens × dim → ffn, the largest GEMM of a block): bf16 `F.linear`, the fp8
    `_scaled_mm` on pre-quantised operands, and the whole fp8 Linear (activation quantiser included)."""
    from vibeboard.wan import fp8_gemm
    g = torch.Generator("cpu").manual_seed(1)
    lin = torch.nn.Linear(dim, ffn).to(device, dtype)
    x = torch.randn(tokens, dim, generator=g).to(device, dtype)
    fp8 = fp8_gemm.Fp8GemmLinear.from_linear(lin)
    res = {"shape": f"{tokens}x{dim} @ {dim}x{ffn}"}
    flops = 2.0 * tokens * dim * ffn
    with torch.no_grad():
        res["bf16 linear (ms)"], ref = timed(lambda: lin(x), repeat)
        res["fp8 linear incl. quantiser (ms)"], out = timed(lambda: fp8(x), repeat)
        variant = fp8_gemm.fused_variant(x.device)
        if variant is not None:
            xq, xs = fp8_gemm.quantize_rows_fast(x)
            bias = fp8.bias.to(dtype)
            res["fp8 _scaled_mm only (ms)"], _ = timed(
                lambda: fp8_gemm.scaled_mm(xq, xs, fp8.weight, fp8.weight_scale, bias, dtype, variant), repeat)
            res["quantiser only (ms)"], _ = timed(lambda: fp8_gemm.quantize_rows_fast(x), repeat)
        res["rel. err"] = rel_err(out, ref)
    for k in [k for k in res if k.endswith("(ms)")]:
        res[k.replace("(ms)", "TFLOP/s")] = flops / res[k] / 1e12 if "quantiser only" not in k else None
        res[k] *= 1e3
    return {k: v for k, v in res.items() if v is not None}


def sampling_modes(handle, cond, shape, args) -> dict:
    """Whole samplings of `args.lossy_steps` steps in each lossy mode against the bf16 one."""
    from vibeboard.wan import sampler as S
    base = S.SamplerSettings(steps=args.lossy_steps, cfg=args.cfg, shift=args.shift, scheduler="unipc", seed=42)
    thresh = args.step_cache if args.step_cache > 0 else 0.1
    modes = [("bf16", {}), ("fp8", dict(precision="fp8")), (f"step cache {thresh}", dict(step_cache=thresh)),
             (f"fp8 + step cache {thresh}", dict(precision="fp8", step_cache=thresh))]
    if _fp8_attention_available(handle.device):
        modes.append(("fp8 + fp8 attention", dict(precision="fp8", attention="fp8")))
    rows, ref = {}, None
    for name, change in modes:
        stats = {}
        sync()
        t0 = time.perf_counter()
        out = S.sample(handle, cond, base.replace(**change), shape, normalized=True, stats=stats)
        sync()
        secs = time.perf_counter() - t0
        ref = out if ref is None else ref
        row = {"per step (s)": secs / args.lossy_steps, "forwards": stats["forwards"],
               "skip ratio": stats.get("skip_ratio", 0.0), "final rel. err": rel_err(out, ref)}
        if "step_cache" in change:   # the cache's own error per skipped forward: a second, audited run
            audit = {}
            S.sample(handle, cond, base.replace(**change), shape, normalized=True, stats=audit, audit_cache=True)
            row["cache rel. err per skipped forward"] = audit.get("cache_rel_err")   # None: nothing skipped
        rows[name] = row
        print(f"lossy sampling, {name}:", {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()},
              flush=True)
    return rows


def run(args, handle, prompt: str, negative: str) -> dict:
    """`handle`: the Wan handle over the benchmark's models (clip_e2e's `load_handle`)."""
    from vibeboard.wan import conditioning as C
    embeds = C.encode_text(handle, [prompt, negative])
    cond = C.WanConditioning(prompt_embeds=embeds[:1], negative_embeds=embeds[1:] if args.cfg > 1 else None)
    shape = C.latent_shape(handle, args.frames, args.height, args.width)
    repeat = 1 if args.quick else 5
    micro = forward_microbench(handle, cond, shape, args.cfg, repeat)
    print("lossy microbench:", {k: (round(v, 4) if isinstance(v, float) else v) for k, v in micro.items()},
          flush=True)
    with handle.use("transformer") as dit:
        cfg = dit.config
        p_t, p_h, p_w = cfg.patch_size
        tokens = (shape[2] // p_t) * (shape[3] // p_h) * (shape[4] // p_w) * (2 if args.cfg > 1 else 1)
        gemm = gemm_microbench(tokens, cfg.num_attention_heads * cfg.attention_head_dim, cfg.ffn_dim,
                               handle.device, handle.dtype, repeat)
    print("lossy GEMM microbench:", {k: (round(v, 4) if isinstance(v, float) else v) for k, v in gemm.items()},
          flush=True)
    return {"microbench": micro, "gemm": gemm, "sampling": sampling_modes(handle, cond, shape, args)}


def tables(res: dict) -> str:
    m, g = res["microbench"], res["gemm"]
    forward = []
    for name in FORWARD_MODES:
        if f"{name} forward (s)" in m:
            ratio, err = m.get(f"{name}/bf16 forward"), m.get(f"{name} rel. err per forward")
            forward.append(['fp8 GEMMs' if name == 'fp8' else name.replace('fp8 +', 'fp8 GEMMs +'),
                            f"{m[f'{name} forward (s)']:.4f}", '—' if ratio is None else f'{ratio:.2f}×',
                            '—' if err is None else f'{err:.2e}'])
    gemm = [[k[:-5], f"{v:.3f}", f"{g.get(k[:-4] + 'TFLOP/s', float('nan')):.0f}"]
            for k, v in g.items() if k.endswith("(ms)")]
    gemm.append(["rel. err of the fp8 Linear", f"{g['rel. err']:.2e}", ""])
    sampling = []
    for name, r in res["sampling"].items():
        cache_err = r.get("cache rel. err per skipped forward")
        sampling.append([name, f"{r['per step (s)']:.4f}", r['forwards'], f"{r['skip ratio']:.2f}",
                         '—' if cache_err is None else f'{cache_err:.2e}', f"{r['final rel. err']:.2e}"])
    return "\n\n".join([
        md_table(["one DiT forward (CFG batch as sampled)", "time (s)", "×bf16",
                  f"rel. err vs bf16 (mean of {len(TIMESTEPS)} timesteps)"], forward),
        md_table([f"FFN up-projection {g['shape']}", "ms", "TFLOP/s"], gemm),
        md_table(["sampling mode", "per step (s)", "DiT forwards", "skip ratio", "step-cache err / skipped forward",
                  "final latents rel. err vs bf16"], sampling)])
