"""StoryMem injection at full size with random weights: time per sampling step vs plain I2V.

    python bench/storymem_gpu.py                 # Wan2.2-A14B expert architecture (14B, bf16), 480x832x81, M=8
    python bench/storymem_gpu.py --size 5b       # or 1.3b, if memory forces it (the output says which)
    python bench/storymem_gpu.py --quick         # tiny config on CPU (checks the script)

What is timed: one sampling step = one CFG evaluation (cond + uncond batched in one forward, as the Wan sampler does)
through the one Wan sampler's model call (`wan.sampler.guided` with StoryMem's conditioning), i.e. the exact StoryMem path: I2V channel conditioning y [4 mask + 16 latent]
over M memory + T shot latent frames, temporal RoPE at {-M*S..-S, 0..T-1}. "plain I2V" is the same call with M = 0
(first frame given, contiguous positions). Both Wan2.2-A14B experts share one architecture, so one expert is built
(28.6 GB in bf16); the high/low switch costs nothing per step. LoRAs are merged into the weights by the Wan layer, so
they add no per-step time. Random weights: numbers measure speed and memory only.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "custom_nodes"), os.path.join(ROOT, "bench")]

from bench_common import card_line, default_dtype, peak_gib, peak_reset, timed, write_json  # noqa: E402
from vibeboard.shots import storymem, tiny_models  # noqa: E402
from vibeboard.wan import sampler as S  # noqa: E402
from vibeboard.wan.conditioning import WanConditioning  # noqa: E402
from vibeboard.wan.rope import frame_positions, memory_frame_positions  # noqa: E402
from vibeboard.wan.sampler import attention_context  # noqa: E402


class Denoiser:
    """One CFG evaluation exactly as the Wan sampler makes it (positions installed as the sampler does)."""

    def __init__(self, model, cond: WanConditioning, positions, dtype, batch_cfg: bool, cfg: float = 3.5):
        self.model, self.cond, self.positions, self.dtype, self.batch_cfg, self.cfg = (model, cond, positions, dtype,
                                                                                       batch_cfg, cfg)

    def __call__(self, x, t: float):
        with frame_positions(self.model, self.positions):
            return S.guided(self.model, x, torch.tensor([t], device=x.device), self.cond, self.cfg, self.dtype,
                            self.batch_cfg)


def build(size: str, device, dtype):
    if size == "tiny":
        return tiny_models.wan_transformer("tiny", in_channels=36, device=device, dtype=dtype)
    with default_dtype(dtype):   # build directly in bf16: a 14B model in fp32 would need 56 GB
        return tiny_models.wan_transformer(size, in_channels=36, device=device, dtype=dtype)


def time_steps(den: Denoiser, x: torch.Tensor, n: int, warmup: int, device) -> list:
    """Seconds of each of `n` steps (timesteps 900, 899, …) after `warmup` steps at 900."""
    timesteps = iter([900.0] * warmup + [900.0 - i for i in range(n)])
    stats = {}
    timed(lambda: den(x, next(timesteps)), n, warmup, device=device, stats=stats)
    return stats["times"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="a14b", choices=["a14b", "5b", "1.3b"])
    ap.add_argument("--frames", type=int, default=81)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=832)
    ap.add_argument("--memory", type=int, default=8, help="memory keyframes M (StoryMem bank: 8-10)")
    ap.add_argument("--rope-gap", type=int, default=5)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per case")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--attention", default="cudnn", choices=["auto", "cudnn", "flash", "efficient", "sdpa"])
    ap.add_argument("--no-batch-cfg", action="store_true", help="cond and uncond as two forwards")
    ap.add_argument("--regional", action="store_true",
                    help="also time plain I2V with 2-box regional prompts (masked cross-attention)")
    ap.add_argument("--quick", action="store_true", help="tiny model, tiny video, CPU")
    ap.add_argument("--json", default="", help="also write the results to this file")
    args = ap.parse_args(argv)

    device = torch.device("cuda" if torch.cuda.is_available() and not args.quick else "cpu")
    size = "tiny" if args.quick else args.size
    if args.quick:
        args.frames, args.height, args.width, args.steps, args.warmup = 9, 32, 48, 2, 1
        args.memory = min(args.memory, 3)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    t0 = time.perf_counter()
    model = build(size, device, dtype)
    build_s = time.perf_counter() - t0
    params = sum(p.numel() for p in model.parameters())
    text_dim = model.config.text_dim
    T = (args.frames - 1) // 4 + 1
    h, w = args.height // 8, args.width // 8
    gen = torch.Generator().manual_seed(0)
    ctx = torch.randn(2, 512, text_dim, generator=gen).to(device, dtype)

    results = {"device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
               "card_line": card_line(device),
               "architecture": {"a14b": "Wan2.2-I2V-A14B expert", "5b": "Wan2.2-TI2V-5B (I2V channels)",
                                "1.3b": "Wan2.1-1.3B (I2V channels)", "tiny": "tiny (--quick)"}[size],
               "params_billion": round(params / 1e9, 3), "build_s": round(build_s, 1), "dtype": str(dtype),
               "video": [args.frames, args.height, args.width], "latent_frames": T, "memory_frames": args.memory,
               "rope_gap": args.rope_gap, "batch_cfg": not args.no_batch_cfg, "attention": args.attention}
    cases = [("plain_i2v", 0, False), ("plain_i2v_positioned_rope", 0, True), ("storymem", args.memory, True)]
    with torch.no_grad(), attention_context(args.attention, device):
        for name, M, positioned in cases:
            shot_cond = torch.randn(1, 16, T, h, w, generator=gen).to(device)
            memory = torch.randn(1, 16, M, h, w, generator=gen).to(device)
            y = storymem.build_condition(memory, shot_cond, args.frames, 1)
            cond = WanConditioning(prompt_embeds=ctx[:1], negative_embeds=ctx[1:], concat_latents=y)
            den = Denoiser(model, cond, memory_frame_positions(M, T, args.rope_gap) if positioned else None, dtype,
                           not args.no_batch_cfg)
            x = torch.randn(1, 16, M + T, h, w, generator=gen).to(device)
            peak_reset(device)
            times = time_steps(den, x, args.steps, args.warmup, device)
            tokens = (M + T) * (h // 2) * (w // 2)
            results[name] = {"tokens": tokens, "step_s": round(sum(times) / len(times), 4),
                             "steps_s": [round(t, 4) for t in times]}
            if device.type == "cuda":
                results[name]["peak_gb"] = round(peak_gib(device), 2)
            print(f"{name:28s} tokens {tokens:6d}  {results[name]['step_s']:.3f} s/step", flush=True)
    if args.regional:
        from vibeboard.shots.regional_attention import regional_attention, regional_context
        T_tok = T * (h // 2) * (w // 2)
        masks = torch.zeros(2, T_tok, dtype=torch.bool)
        grid = masks.view(2, T, h // 2, w // 2)
        grid[0, :, :, : (w // 2) // 3] = True
        grid[1, :, : (h // 2) // 2, (w // 2) // 2:] = True
        rctx, seg = regional_context(ctx[:1], [ctx[1:], ctx[:1]])
        shot_cond = torch.randn(1, 16, T, h, w, generator=gen).to(device)
        y = storymem.build_condition(torch.zeros(1, 16, 0, h, w, device=device), shot_cond, args.frames, 1)
        den = Denoiser(model, WanConditioning(prompt_embeds=rctx, negative_embeds=ctx[1:], concat_latents=y), None,
                       dtype, not args.no_batch_cfg)
        x = torch.randn(1, 16, T, h, w, generator=gen).to(device)
        with torch.no_grad(), attention_context(args.attention, device), \
                regional_attention(model, masks.to(device), seg):
            times = time_steps(den, x, args.steps, args.warmup, device)
        results["plain_i2v_regional_2_boxes"] = {"tokens": T_tok, "step_s": round(sum(times) / len(times), 4),
                                                 "note": "cond (3 prompts, masked) and uncond run as 2 forwards"}
        print(f"{'plain_i2v_regional_2_boxes':28s} tokens {T_tok:6d}  {results['plain_i2v_regional_2_boxes']['step_s']:.3f} s/step")
    base = results["plain_i2v"]["step_s"]
    results["storymem_vs_plain"] = round(results["storymem"]["step_s"] / base, 3)
    results["rope_override_overhead"] = round(results["plain_i2v_positioned_rope"]["step_s"] / base - 1, 4)
    print(json.dumps(results, indent=1))
    write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
