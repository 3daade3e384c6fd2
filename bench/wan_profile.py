"""Where one Wan2.1-1.3B DiT forward spends its GPU time (480×832×81, random bf16 weights).

Prints CUDA time per kernel class (attention, GEMM, elementwise/norm/other) and the top kernels, plus raw SDPA
throughput per backend on the forward's attention shape. Usage: python bench/wan_profile.py [--compile]
"""
import argparse
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "custom_nodes"), os.path.join(ROOT, "bench")]

from bench_common import card_line, sync  # noqa: E402
from wan_gpu import CFG_13B, build_dit  # noqa: E402


def classify(name: str) -> str:
    low = name.lower()
    if any(k in low for k in ("fmha", "flash", "attention", "cudnn", "sdpa")):
        return "attention"
    if any(k in low for k in ("gemm", "cutlass", "sm90_xmma", "nvjet", "matmul", "wgmma")):
        return "gemm"
    return "other"


def sdpa_backends():
    from torch.nn.attention import SDPBackend, sdpa_kernel
    q, k, v = (torch.randn(1, 12, 32760, 128, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    flops = 4 * 32760 * 32760 * 128 * 12
    for name, backend in (("cudnn", SDPBackend.CUDNN_ATTENTION), ("flash", SDPBackend.FLASH_ATTENTION)):
        try:
            with sdpa_kernel(backend):
                for _ in range(2):
                    torch.nn.functional.scaled_dot_product_attention(q, k, v)
                sync()
                t0 = time.perf_counter()   # 5 calls back to back (a throughput), so not bench_common.timed
                for _ in range(5):
                    torch.nn.functional.scaled_dot_product_attention(q, k, v)
                sync()
            sec = (time.perf_counter() - t0) / 5
            print(f"sdpa {name:<6} {sec * 1000:8.2f} ms  {flops / sec / 1e12:6.0f} TFLOP/s")
        except Exception as exc:
            print(f"sdpa {name}: {type(exc).__name__}: {exc}"[:200])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--compile", action="store_true")
    args = ap.parse_args()
    print(card_line())
    sdpa_backends()
    model = build_dit(CFG_13B, torch.device("cuda"))
    g = torch.Generator("cpu").manual_seed(1)
    x = torch.randn(1, 16, 21, 60, 104, generator=g).to("cuda", torch.bfloat16)
    text = (torch.randn(1, 512, 4096, generator=g) * 0.1).to("cuda", torch.bfloat16)
    t = torch.tensor([700.0], device="cuda")
    if args.compile:
        for block in model.blocks:
            block.compile(fullgraph=False, dynamic=False)

    def forward():
        with torch.no_grad():
            return model(hidden_states=x, timestep=t, encoder_hidden_states=text, return_dict=False)[0]

    for _ in range(2):
        forward()
    sync()
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        forward()
        sync()
    totals, kernels = {}, {}
    for evt in prof.key_averages():
        cuda_us = getattr(evt, "device_time_total", None) or getattr(evt, "cuda_time_total", 0)
        if cuda_us <= 0 or evt.key.startswith(("aten::", "cuda", "Memcpy", "Memset")):
            continue
        kind = classify(evt.key)
        totals[kind] = totals.get(kind, 0) + cuda_us
        kernels[evt.key] = (kind, cuda_us, evt.count)
    total = sum(totals.values())
    print(f"forward GPU time {total / 1000:.1f} ms ({'compiled blocks' if args.compile else 'eager'})")
    for kind, us in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"  {kind:<10} {us / 1000:8.1f} ms  {100 * us / total:5.1f} %")
    print("top kernels:")
    for name, (kind, us, count) in sorted(kernels.items(), key=lambda kv: -kv[1][1])[:25]:
        print(f"  {us / 1000:8.2f} ms  x{count:<4} {kind:<9} {name[:110]}")


if __name__ == "__main__":
    main()
