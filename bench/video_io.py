"""Throughput of the media nodes' encode (IMAGE → H.264 MP4) and decode (MP4 → IMAGE) paths.

    python bench/video_io.py            # 1920x1080, 48 frames, presets veryfast and medium
    python bench/video_io.py --quick    # 320x240, 12 frames (a few seconds on a laptop CPU)

CPU-bound (libx264 / the H.264 decoder / swscale); a GPU makes no difference here, except that frames
living on the GPU are copied to the CPU one at a time.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "custom_nodes"))

import torch  # noqa: E402

from vibeboard.media import video as video_io  # noqa: E402


def moving_scene(frames: int, height: int, width: int) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    clip = torch.empty((frames, height, width, 3))
    for i in range(frames):
        phase = i / max(frames, 1)
        clip[i, ..., 0] = (xx + phase) % 1.0
        clip[i, ..., 1] = yy
        clip[i, ..., 2] = 0.5 + 0.5 * torch.sin(12.0 * (xx + yy) + 6.28 * phase)
    return clip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes")
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--size", default=None, help="WIDTHxHEIGHT")
    parser.add_argument("--presets", default="veryfast,medium")
    args = parser.parse_args()
    width, height = (320, 240) if args.quick else (1920, 1080)
    if args.size:
        width, height = (int(v) for v in args.size.lower().split("x"))
    frames = args.frames or (12 if args.quick else 48)
    clip = moving_scene(frames, height, width)
    print(f"clip: {frames} frames {width}x{height}, torch threads {torch.get_num_threads()}, "
          f"cpus {os.cpu_count()}")
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets.split(","):
            path = os.path.join(tmp, f"{preset}.mp4")
            start = time.perf_counter()
            video_io.write_video(path, clip, 24, crf=19, preset=preset)
            encode = time.perf_counter() - start
            start = time.perf_counter()
            loaded = video_io.load_video(path)
            decode = time.perf_counter() - start
            error = (loaded.frames - clip).abs().mean().item()
            size_kb = os.path.getsize(path) / 1024
            print(f"preset {preset:9s} crf 19: encode {frames / encode:7.1f} fps ({encode:.2f} s), "
                  f"decode→IMAGE {frames / decode:7.1f} fps ({decode:.2f} s), {size_kb:8.1f} KiB, "
                  f"mean abs error {error * 255:.2f}/255")


if __name__ == "__main__":
    main()
