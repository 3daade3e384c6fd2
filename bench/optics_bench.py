"""Focal-stack render time: 1920×1080, 24 focus steps, on CPU and (when present) CUDA.

    python bench/optics_bench.py            # full size; goal on an H100: ≤ 1 s per 24-step stack
    python bench/optics_bench.py --quick    # 320×180, 8 steps: a smoke run for CPU-only machines

Two scenes: `sample` (the procedural RGB-D scene: four depth planes, so few layers per focus step) and
`ramp` (the same picture on a continuous depth ramp 1 m → 40 m: every CoC layer is occupied — the worst
case for the layered renderer). Each timing is the median of --runs after one warm-up run; CUDA timings
synchronise before reading the clock. "median s" is the render on the device; "+to CPU s" adds copying the
frames to host memory (what a node returns).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "custom_nodes"), os.path.join(ROOT, "bench")]

import torch  # noqa: E402

from bench_common import card_line, median, peak_gib, peak_reset, sync  # noqa: E402
from vibeboard.optics import bokeh, defocus, focal_stack, sample_scene  # noqa: E402

GOAL_GPU_S = 1.0


def scenes(width: int, height: int) -> dict:
    scene = sample_scene.make_scene(width, height, seed=0)
    ramp = 1.0 / torch.linspace(1.0, 1 / 40.0, height).view(-1, 1).expand(height, width).contiguous()
    return {"sample": (scene.image, scene.depth), "ramp": (scene.image, ramp)}


def time_stack(image, depth, steps: int, lens: bokeh.LensSettings, device: torch.device, runs: int) -> list:
    image, inv = image.to(device), defocus.inverse_depth(depth, defocus.METRIC).to(device)

    def once() -> tuple:   # (render, render + copy to host): two clocks of one call, so not bench_common.timed
        sync(device)
        start = time.perf_counter()
        frames, _ = focal_stack.render_focal_stack(image, inv, steps, lens)
        sync(device)
        rendered = time.perf_counter()
        assert frames.shape[0] == steps
        frames.cpu()  # what a node hands on: IMAGE on the CPU
        return rendered - start, time.perf_counter() - start

    once()  # warm-up: kernel spectra, cuFFT plans, allocator
    return [once() for _ in range(runs)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="320x180, 8 steps, 1 run")
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--runs", type=int, default=5, help="timed runs per case on GPU (median reported)")
    parser.add_argument("--cpu-runs", type=int, default=1, help="timed runs per case on CPU")
    parser.add_argument("--aperture-k", type=float, default=40.0)
    parser.add_argument("--max-coc", type=float, default=64.0)
    parser.add_argument("--blades", type=int, default=0, help="0 = disc, >= 3 = polygon")
    parser.add_argument("--devices", default="auto", help="auto | cpu | cuda | cpu,cuda")
    parser.add_argument("--scenes", default="sample,ramp")
    args = parser.parse_args(argv)
    if args.quick:
        args.width, args.height, args.steps, args.runs, args.cpu_runs = 320, 180, 8, 1, 1
    if args.devices == "auto":
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    else:
        devices = [d.strip() for d in args.devices.split(",") if d.strip()]
    lens = bokeh.LensSettings(aperture_k=args.aperture_k, max_coc=args.max_coc, blades=args.blades)
    cases = scenes(args.width, args.height)
    print(card_line())
    print(f"focal stack {args.width}x{args.height}, {args.steps} focus steps, K={args.aperture_k}, "
          f"max CoC {args.max_coc}px, {'disc' if args.blades < 3 else f'{args.blades}-blade'} aperture, "
          f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    header = (f"{'device':<28} {'scene':<7} {'median s':>9} {'min s':>8} {'ms/frame':>9} {'+to CPU s':>10} "
              f"{'runs':>5}  goal")
    print(header)
    print("-" * len(header))
    failed = False
    for name in devices:
        device = torch.device(name)
        label = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        runs = args.runs if device.type == "cuda" else args.cpu_runs
        for scene_name in [s.strip() for s in args.scenes.split(",") if s.strip()]:
            image, depth = cases[scene_name]
            timings = time_stack(image, depth, args.steps, lens, device, runs)
            times = [render for render, _ in timings]
            median_s = median(times)
            with_copy = median([total for _, total in timings])
            goal = ""
            full_size = (args.width, args.height, args.steps) == (1920, 1080, 24)
            if device.type == "cuda" and full_size:
                ok = median_s <= GOAL_GPU_S
                failed |= not ok
                goal = f"{'ok' if ok else 'MISSED'} (<= {GOAL_GPU_S:.1f} s)"
            print(f"{label[:28]:<28} {scene_name:<7} {median_s:>9.3f} {min(times):>8.3f} "
                  f"{1000 * median_s / args.steps:>9.1f} {with_copy:>10.3f} {runs:>5}  {goal}")
            if device.type == "cuda":
                print(f"{'':<28} {'':<7} peak GPU memory {peak_gib(device):.2f} GiB")
                peak_reset(device)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
