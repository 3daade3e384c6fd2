"""Compile warm-up of the Wan 1.3B blocks: first process on a machine vs the next ones (issue 12 item 3).

    python bench/compile_warmup.py                       # CUDA: Wan2.1-T2V-1.3B, 832x480x81, CFG batch 2
    python bench/compile_warmup.py --modes default reduce-overhead max-autotune-no-cudagraphs
    python bench/compile_warmup.py --quick               # tiny DiT on CPU: checks the bench runs

Each row is a fresh Python process (so nothing is warm in memory) that builds the DiT with random bf16 weights,
runs two eager forwards, then compiles the blocks with the sampler's own `compile_blocks(model, mode)` (regional:
one graph for the 30 blocks; artefacts persisted by `wan/compile_cache.py`) and times:
warm-up = first compiled forward − eager forward; then the steady compiled forward (median of `--repeat`) and its
max |diff| against the eager output. Per mode, one scratch cache folder (VIBEBOARD_COMPILE_CACHE) shared by:
  cold          nothing cached (what a fresh pod pays once)
  warm          the same folder again: mega-cache file + inductor/Triton dir (every later process on the machine)
  mega only     mega-cache file only, an empty inductor dir (what `save/load_cache_artifacts` alone restores)
`--quick` swaps the DiT for a three-block Linear stand-in on CPU (same processes, caches and table).
`--precompile` adds Dynamo's experimental caching_precompile (saves the traced bytecode too) as its own mode.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "custom_nodes"), os.path.join(ROOT, "bench")]

from bench_common import card_line, max_abs_err, md_row, md_table, timed, write_json  # noqa: E402


def child(args) -> dict:
    """One process: eager vs compiled forwards of the DiT (runs in a subprocess)."""
    import torch
    from torch._dynamo.utils import counters
    if args.precompile:
        torch._dynamo.config.caching_precompile = True
    from vibeboard.wan import compile_cache, sampler
    device = "cpu" if args.quick else "cuda"
    t0 = time.perf_counter()
    torch.manual_seed(0)
    if args.quick:
        model = tiny_dit(torch)
        shape, text = (2, 4, 8), (2, 3, 8)
    else:
        from clip_e2e import WAN_1_3B            # the published Wan2.1-T2V-1.3B config
        from wan_gpu import build_dit_direct_bf16
        model = build_dit_direct_bf16(WAN_1_3B, device)
        shape, text = (2, 16, 21, 60, 104), (2, 512, 4096)
    model.eval().requires_grad_(False)
    g = torch.Generator(device).manual_seed(1)
    x = torch.randn(shape, device=device, dtype=torch.bfloat16, generator=g)
    ctx = torch.randn(text, device=device, dtype=torch.bfloat16, generator=g)
    t = torch.full((2,), 500.0, device=device)

    def forward():
        with torch.no_grad(), sampler.attention_context("auto", torch.device(device)):
            return model(hidden_states=x, timestep=t, encoder_hidden_states=ctx, return_dict=False)[0]

    build = time.perf_counter() - t0
    eager, ref = timed(forward, 1, warmup=1, device=device)   # the second eager forward
    sampler.compile_blocks(model, mode=None if args.mode == "default" else args.mode)
    key_files_before = _mega_files(compile_cache)
    # the warm-up call is the first compiled forward (it compiles); the steady median of --repeat more follows
    stats = {}
    compiled, out = timed(forward, args.repeat, warmup=1, device=device, stats=stats)
    first = stats["first_s"]
    return {"build_s": build, "eager_s": eager, "first_compiled_s": first, "warmup_s": first - eager,
            "compiled_s": compiled,
            "max_abs_vs_eager": max_abs_err(out, ref),
            "mega_files_before": key_files_before, "mega_files_after": _mega_files(compile_cache),
            "inductor_dir": os.environ.get("TORCHINDUCTOR_CACHE_DIR"),
            "counters": {k: dict(v) for k, v in counters.items() if k in ("inductor", "aot_autograd", "stats")}}


def tiny_dit(torch):
    """--quick: a DiT stand-in with `.blocks` and `.config` whose blocks are Linear only, so CPU inductor emits
    extern matmul calls and no C++ kernel (a g++ build per process would take a minute on CI)."""
    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(8, 8)

        def forward(self, x):
            return self.proj(x)

    class TinyDiT(torch.nn.Module):
        config = {"num_layers": 3, "dim": 8}

        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.ModuleList(Block() for _ in range(3))

        def forward(self, hidden_states, timestep, encoder_hidden_states, return_dict=False):
            for blk in self.blocks:
                hidden_states = blk(hidden_states)
            return (hidden_states,)

    return TinyDiT().to(torch.bfloat16)


def _mega_files(compile_cache) -> list:
    d = compile_cache.machine_dir()
    return sorted(f for f in os.listdir(d) if f.startswith("mega-")) if os.path.isdir(d) else []


def spawn(args, mode: str, cache: str, inductor: str = None, precompile: bool = False) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_CACHE_DIR"}
    env["VIBEBOARD_COMPILE_CACHE"] = cache
    if inductor:
        env["TORCHINDUCTOR_CACHE_DIR"] = inductor
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--mode", mode, "--repeat", str(args.repeat)]
    cmd += ["--quick"] if args.quick else []
    cmd += ["--precompile"] if precompile else []
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}",
                "process_s": wall}
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["process_s"] = wall
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny DiT on CPU (checks the bench runs)")
    ap.add_argument("--modes", nargs="+", default=["default", "reduce-overhead"],
                    help="torch.compile modes: default, reduce-overhead (CUDA graphs), max-autotune-no-cudagraphs, …")
    ap.add_argument("--precompile", action="store_true", help="also Dynamo caching_precompile (experimental)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--timeout", type=int, default=600, help="seconds per process")
    ap.add_argument("--json")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="default", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return None
    if args.quick:
        args.modes, args.repeat = args.modes[:1], 1
    plans = [(m, False) for m in args.modes] + ([("default", True)] if args.precompile else [])
    results = {}
    print(card_line("cpu" if args.quick else None))
    print(md_table(["mode", "process", "warm-up (s)", "first compiled fwd (s)", "compiled fwd (s)", "eager fwd (s)",
                    "max abs vs eager", "fx graph hit/miss", "process wall (s)"], []), flush=True)
    with tempfile.TemporaryDirectory(prefix="compile_warmup_") as work:
        for mode, precompile in plans:
            name = mode + (" + caching_precompile" if precompile else "")
            cache = os.path.join(work, name.replace(" ", "_"))
            rows = {"cold": spawn(args, mode, cache, precompile=precompile),
                    "warm": spawn(args, mode, cache, precompile=precompile),
                    "mega only": spawn(args, mode, cache, inductor=os.path.join(work, name + "_empty_inductor"),
                                       precompile=precompile)}
            results[name] = rows
            for proc, r in rows.items():
                if "error" in r:
                    print(md_row([name, proc, f"failed: {r['error'][:120]}"]), flush=True)
                    continue
                ind = r["counters"].get("inductor", {})
                print(md_row([name, proc, f"{r['warmup_s']:.2f}", f"{r['first_compiled_s']:.2f}",
                              f"{r['compiled_s']:.3f}", f"{r['eager_s']:.3f}", f"{r['max_abs_vs_eager']:.3g}",
                              f"{ind.get('fxgraph_cache_hit', 0)}/{ind.get('fxgraph_cache_miss', 0)}",
                              f"{r['process_s']:.1f}"]), flush=True)
    write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
