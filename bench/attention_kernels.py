"""Attention kernels at Wan's self-attention shapes: cuDNN / FlashAttention SDPA vs our Triton kernels.

    python bench/attention_kernels.py                  # H100/H200, full size (≈2–3 min)
    python bench/attention_kernels.py --json out.json  # also write the numbers
    python bench/attention_kernels.py --quick          # CPU, Triton interpreter, tiny shapes (numbers meaningless)
    python bench/attention_kernels.py --no-dit         # kernels only (skip the DiT forward section)
    python bench/attention_kernels.py --sass           # no GPU needed: compile every config for sm_90 and report
                                                       # registers, spills, shared memory, tensor-core instructions

Section 1, per shape (Wan2.1 1.3B: 12 heads, 14B: 40 heads; B = 1, or 2 with batched CFG; N = 32,760 tokens
= 832×480×81; d = 128; bf16; q, k, v in diffusers' [B, N, H, D] layout): time of each kernel
(`triton.testing.do_bench`, median), TFLOP/s = 4·B·H·N²·d / time, and the error against cuDNN's output (max abs,
relative Frobenius). Our bf16 kernel and the 8-bit ones are listed per config (the tuner picks the fastest at run
time; a config that fails to build here shows its error). 8-bit times include the quantisation pass.
Section 2: one Wan2.1-1.3B DiT forward (random weights, 81 frames) with attention=cudnn / triton / fp8 / int8:
time and relative error of the DiT output against cudnn (goal for fp8: ≤ 3e-2 per forward).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "custom_nodes"), os.path.join(ROOT, "bench")]

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from bench_common import card_line, max_abs_and_rel_err, timed, write_json  # noqa: E402

FULL_SHAPES = [(1, 32760, 12, 128), (2, 32760, 12, 128), (1, 32760, 40, 128), (2, 32760, 40, 128)]
QUICK_SHAPES = [(2, 50, 2, 64)]
ROWS: list = []


def row(shape, name, ms, flops, err=None, note=""):
    tflops = flops / (ms * 1e-3) / 1e12 if ms else float("nan")
    entry = {"shape": list(shape), "kernel": name, "ms": ms, "tflops": tflops,
             "max_err": None if err is None else err[0], "rel_err": None if err is None else err[1], "note": note}
    ROWS.append(entry)
    e = "" if err is None else f"{err[0]:10.4f} {err[1]:10.2e}"
    shown = f"{ms:9.3f} {tflops:8.1f}" if ms else f"{'—':>9} {'—':>8}"
    print(f"{str(tuple(shape)):<24} {name:<28} {shown} {e:<21} {note}", flush=True)
    return entry


def timer(quick):
    if quick:  # interpreter: one wall-clock run is all that is affordable (and meaningful only as a smoke test)
        def run(fn):
            t0 = time.perf_counter()
            fn()
            return (time.perf_counter() - t0) * 1e3
        return run
    from triton.testing import do_bench
    return lambda fn: do_bench(fn, warmup=25, rep=100)


def sdpa(q, k, v, backend=None):
    """SDPA on [B, N, H, D] as diffusers' native backend calls it (transposed views in, transposed view out)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    qt, kt, vt = (t.transpose(1, 2) for t in (q, k, v))
    if backend is None:
        return F.scaled_dot_product_attention(qt, kt, vt).transpose(1, 2)
    with sdpa_kernel([getattr(SDPBackend, backend)]):
        return F.scaled_dot_product_attention(qt, kt, vt).transpose(1, 2)


def section_kernels(args, shapes, device):
    from vibeboard.wan.attention import triton_bf16, triton_fp8
    from vibeboard.wan.attention.configs import KernelConfig
    bench = timer(args.quick)
    configs_bf16 = triton_bf16.CONFIGS if not args.quick else [KernelConfig(32, 16, 4, 1, pipeline_qk=True)]
    configs_8bit = triton_fp8.CONFIGS if not args.quick else [KernelConfig(32, 16, 4, 1)]
    print(f"{'shape (B, N, H, D)':<24} {'kernel':<28} {'ms':>9} {'TFLOP/s':>8} {'max err':>10} {'rel err':>10}")
    for shape in shapes:
        if time.perf_counter() - T0 > args.budget_s:
            print(f"(budget of {args.budget_s:.0f} s spent: {shape} and later skipped)")
            break
        b, n, h, d = shape
        flops = 4 * b * h * n * n * d
        g = torch.Generator(device="cpu").manual_seed(0)
        q, k, v = (torch.randn(shape, generator=g).to(device, torch.bfloat16) for _ in range(3))
        if device.type == "cuda":
            try:
                ref = sdpa(q, k, v, "CUDNN_ATTENTION")
                row(shape, "sdpa cudnn", bench(lambda: sdpa(q, k, v, "CUDNN_ATTENTION")), flops, (0.0, 0.0))
            except Exception as exc:  # errors are then against torch's default SDPA choice
                ref = sdpa(q, k, v)
                row(shape, "sdpa cudnn", None, flops, note=f"{type(exc).__name__}: {exc}"[:120])
            try:
                out = sdpa(q, k, v, "FLASH_ATTENTION")
                row(shape, "sdpa flash", bench(lambda: sdpa(q, k, v, "FLASH_ATTENTION")), flops, max_abs_and_rel_err(out, ref))
            except Exception as exc:
                row(shape, "sdpa flash", None, flops, note=f"{type(exc).__name__}: {exc}"[:120])
        else:
            ref = sdpa(q.float(), k.float(), v.float())
            row(shape, "sdpa (fp32 reference)", bench(lambda: sdpa(q, k, v)), flops, max_abs_and_rel_err(sdpa(q, k, v), ref))
        out_buf = torch.empty_like(q)
        scale = d ** -0.5
        for cfg in configs_bf16:
            try:
                out = triton_bf16.launch(q, k, v, out_buf, cfg, scale)
                err = max_abs_and_rel_err(out, ref)
                row(shape, f"triton bf16 {cfg.name}", bench(lambda: triton_bf16.launch(q, k, v, out_buf, cfg, scale)),
                    flops, err)
            except Exception as exc:
                row(shape, f"triton bf16 {cfg.name}", None, flops, note=f"{type(exc).__name__}: {exc}"[:120])
        for v_fp8, label in ((True, "fp8"), (False, "int8")):
            for cfg in configs_8bit:
                try:
                    out = triton_fp8.launch(q, k, v, out_buf, cfg, scale, v_fp8)
                    err = max_abs_and_rel_err(out, ref)
                    row(shape, f"{label} {cfg.name}",
                        bench(lambda: triton_fp8.launch(q, k, v, out_buf, cfg, scale, v_fp8)), flops, err)
                except Exception as exc:
                    row(shape, f"{label} {cfg.name}", None, flops, note=f"{type(exc).__name__}: {exc}"[:120])
            cfg = configs_8bit[0]
            try:
                row(shape, f"{label} quantisation only", bench(lambda: triton_fp8.quantize(q, k, v, scale, cfg.block_n,
                                                                                         v_fp8)), 0,
                    note="(part of the row above; TFLOP/s meaningless)")
            except Exception as exc:
                row(shape, f"{label} quantisation only", None, 0, note=f"{type(exc).__name__}: {exc}"[:120])
        q = k = v = ref = out_buf = out = None  # free the big tensors before the next shape
        if device.type == "cuda":
            torch.cuda.empty_cache()


def section_dit(args, device):
    """One DiT forward per attention setting; error of the whole forward against cuDNN's."""
    from vibeboard.wan import sampler as S
    from vibeboard.wan.attention.processor import kernel_attention
    if args.quick:
        from vibeboard.models import tiny
        model = tiny.build_transformer("t2v", 0, attention_head_dim=64).to(torch.bfloat16)
        latent, text_shape = (1, 16, 3, 4, 6), (1, 8, 32)
    else:
        from wan_gpu import CFG_13B, build_dit
        model = build_dit(CFG_13B, device)
        latent, text_shape = (1, 16, 21, 60, 104), (1, 512, 4096)
    g = torch.Generator("cpu").manual_seed(1)
    x = torch.randn(latent, generator=g).to(device, torch.bfloat16)
    text = (torch.randn(text_shape, generator=g) * 0.1).to(device, torch.bfloat16)
    t = torch.tensor([700.0], device=device)

    def forward(kind):
        import contextlib
        with torch.no_grad(), contextlib.ExitStack() as stack:
            if kind in S.KERNEL_ATTENTION:
                stack.enter_context(kernel_attention(model, kind, device))
            stack.enter_context(S.attention_context("cudnn" if kind == "cudnn" else kind, device))
            return model(hidden_states=x, timestep=t, encoder_hidden_states=text, return_dict=False)[0]

    def forward_ms(kind):
        """Median ms of 3 forwards after a warm-up (the kernels tune once per shape there); --quick: one, cold."""
        sec, out = timed(lambda: forward(kind), 1 if args.quick else 3, warmup=0 if args.quick else 1,
                         device=device)
        return sec * 1e3, out

    print(f"\nWan2.1-1.3B DiT forward ({'tiny' if args.quick else '81x480x832, random weights'}), "
          f"error of the DiT output vs cudnn")
    ref_ms, ref = forward_ms("cudnn")
    row(latent, "DiT forward cudnn", ref_ms, 0, (0.0, 0.0), "(TFLOP/s not computed for the DiT)")
    for kind in ("triton", "fp8") if args.quick else ("triton", "fp8", "int8"):
        if time.perf_counter() - T0 > args.budget_s:
            print(f"(budget of {args.budget_s:.0f} s spent: DiT {kind} and later skipped)")
            break
        try:
            ms, out = forward_ms(kind)
            row(latent, f"DiT forward {kind}", ms, 0, max_abs_and_rel_err(out, ref), f"{ref_ms / ms:.3f}x cudnn")
        except Exception as exc:
            row(latent, f"DiT forward {kind}", None, 0, note=f"{type(exc).__name__}: {exc}"[:160])


def summary():
    """Per shape: the fastest config of each of our kernels against cuDNN (the number that decides AUTO_KERNEL)."""
    print("\nsummary (fastest config per kernel, speed-up over sdpa cudnn, rel err vs cudnn)")
    for shape in sorted({tuple(r["shape"]) for r in ROWS if len(r["shape"]) == 4}):
        rows = [r for r in ROWS if tuple(r["shape"]) == shape and r["ms"]]
        base = next((r for r in rows if r["kernel"] == "sdpa cudnn"), None)
        parts = []
        for prefix in ("triton bf16 ", "fp8 m", "int8 m"):
            mine = [r for r in rows if r["kernel"].startswith(prefix)]
            if mine:
                best = min(mine, key=lambda r: r["ms"])
                ratio = f" {base['ms'] / best['ms']:.2f}x" if base else ""
                parts.append(f"{best['kernel']} {best['ms']:.3f} ms{ratio} (rel {best['rel_err']:.1e})")
        print(f"  {str(shape):<22} " + " | ".join(parts))


def tuner_choices():
    from vibeboard.wan.attention import triton_bf16, triton_fp8
    out = {}
    for name, tuner in (("triton", triton_bf16.TUNER), ("fp8", triton_fp8.TUNERS[True]),
                        ("int8", triton_fp8.TUNERS[False])):
        out[name] = {str(key[0]): cfg.name for key, cfg in tuner.best.items()}
        for key, timings in tuner.timings.items():
            print(f"tuner {name} {key[0]}: " + ", ".join(f"{n} {v:.3f} ms" if isinstance(v, float) else f"{n} {v}"
                                                          for n, v in timings.items()))
    return out


def _signature(kind, cfg, d=128):
    """Argument types of our kernels for an ahead-of-time compile (what a launch at Wan's shapes passes)."""
    bm, bn = cfg.block_m, cfg.block_n
    elem = {"triton": "bf16", "fp8": "i8", "int8": "i8"}[kind]

    def tile(rows, el=elem, flat=cfg.flat):
        return f"tensordesc<{el}[{rows},{d}]>" if flat else f"tensordesc<{el}[1,{rows},1,{d}]>"
    sig = {"q_desc": tile(bm), "k_desc": tile(bn),
           "v_desc": {"triton": tile(bn), "fp8": f"tensordesc<fp8e4nv[{d},{bn}]>", "int8": tile(bn, "bf16")}[kind],
           "o_desc": f"tensordesc<bf16[1,{bm},1,{d}]>"}
    consts = {"HEAD_DIM": d, "BLOCK_M": bm, "BLOCK_N": bn, "WARP_SPECIALIZE": cfg.warp_specialize,
              "FLAT": cfg.flat, "PIPELINE_QK": cfg.pipeline_qk}
    if kind == "triton":
        sig.update(n_q="i32", n_kv="i32", heads="i32", qk_scale="fp32")
        consts["LAZY"] = cfg.lazy_rescale
    else:
        sig.update(q_scale_ptr="*fp32", k_scale_ptr="*fp32", v_scale_ptr="*fp32", v_mean_ptr="*fp32", n_q="i32",
                   n_kv="i32", heads="i32", n_blocks="i32")
        consts["V_FP8"] = kind == "fp8"
    sig.update({name: "constexpr" for name in consts})
    return sig, consts


def sass_report(kinds=("triton", "fp8", "int8"), first_only=False):
    """Compile each config for sm_90 on this machine (Triton bundles ptxas and cuobjdump) and read the SASS:
    registers per thread, spill stack, shared memory, and the Hopper tensor-core instructions (HGMMA bf16,
    IGMMA int8, QGMMA fp8) a fast kernel must use."""
    import re
    import subprocess
    import tempfile

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from vibeboard.wan.attention import triton_bf16, triton_fp8
    tools = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
    out = []
    print(f"{'kernel':<34} {'regs':>5} {'spill B':>8} {'smem KB':>8} {'HGMMA':>6} {'IGMMA':>6} {'QGMMA':>6} "
          f"{'MUFU.EX2':>8}")
    for kind in kinds:
        fn, configs = (triton_bf16._attn_fwd, triton_bf16.CONFIGS) if kind == "triton" else \
            (triton_fp8._attn_fwd_8bit, triton_fp8.CONFIGS)
        for cfg in configs[:1] if first_only else configs:
            sig, consts = _signature(kind, cfg)
            name = f"{kind} {cfg.name}"
            try:
                k = triton.compile(ASTSource(fn, sig, consts), target=GPUTarget("cuda", 90, 32),
                                   options={"num_warps": cfg.num_warps, "num_stages": cfg.num_stages})
                with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
                    f.write(k.asm["cubin"])
                    f.flush()
                    usage = subprocess.run([os.path.join(tools, "cuobjdump"), "--dump-resource-usage", f.name],
                                           capture_output=True, text=True).stdout
                    sass = subprocess.run([os.path.join(tools, "cuobjdump"), "--dump-sass", f.name],
                                          capture_output=True, text=True).stdout
                entry = {"kernel": name, "regs": int(re.search(r"REG:(\d+)", usage).group(1)),
                         "spill_bytes": int(re.search(r"STACK:(\d+)", usage).group(1)),
                         "smem_kb": k.metadata.shared / 1024,
                         **{op: len(re.findall(r"\b" + op + r"[. ]", sass)) for op in ("HGMMA", "IGMMA", "QGMMA", "MUFU.EX2")}}
                print(f"{name:<34} {entry['regs']:>5} {entry['spill_bytes']:>8} {entry['smem_kb']:>8.1f} "
                      f"{entry['HGMMA']:>6} {entry['IGMMA']:>6} {entry['QGMMA']:>6} {entry['MUFU.EX2']:>8}", flush=True)
            except Exception as exc:
                entry = {"kernel": name, "error": f"{type(exc).__name__}: {exc}"[:300]}
                print(f"{name:<34} FAILED {entry['error']}", flush=True)
            out.append(entry)
    return out


T0 = time.perf_counter()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="CPU + Triton interpreter, tiny shapes")
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument("--no-dit", action="store_true", help="skip the DiT forward section")
    ap.add_argument("--budget-s", type=float, default=210.0, help="skip the remaining parts after this long")
    ap.add_argument("--sass", action="store_true", help="compile every config for sm_90 and read its SASS (no GPU)")
    ap.add_argument("--first-only", action="store_true", help="with --sass: the first config of each kernel")
    args = ap.parse_args(argv)
    global T0
    T0 = time.perf_counter()
    ROWS.clear()
    if args.sass:
        if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
            raise SystemExit("--sass compiles for the GPU: unset TRITON_INTERPRET")
        report = sass_report(first_only=args.first_only)
        write_json(args.json, {"sass": report})
        return report
    if args.quick:
        os.environ["TRITON_INTERPRET"] = "1"
        device = torch.device("cpu")
    else:
        if not torch.cuda.is_available():
            raise SystemExit("needs a CUDA GPU (or --quick)")
        device = torch.device("cuda")
    print(card_line(device))
    section_kernels(args, QUICK_SHAPES if args.quick else FULL_SHAPES, device)
    summary()
    if not args.no_dit:
        section_dit(args, device)
    choices = tuner_choices()
    print(f"total {time.perf_counter() - T0:.1f} s")
    write_json(args.json, {"rows": ROWS, "tuned": choices,
                           "device": "cpu (interpreter)" if args.quick else torch.cuda.get_device_name()})
    return ROWS


if __name__ == "__main__":
    main()
