"""Audio-driven talking head (InfiniteTalk/MultiTalk adapter on Wan2.1-I2V-14B): seconds per sampling step and
peak VRAM in each memory mode the Wan runtime offers, at full size with random bf16 weights built on the device.

    python bench/talking_head_gpu.py            # CUDA: Wan2.1-I2V-14B + adapter in its published shapes, 480×832×81
    python bench/talking_head_gpu.py --quick    # tiny config on CPU (checks the script; a test runs it)

A sampling step is what `wan.sampler.sample()` does per step on a handle whose model adapter is the audio adapter:
upstream's three guidance passes (text + audio, audio without text, neither; `talking_audio.audio_guidance`) in
one batched forward, the sampler's batch_cfg (`--rows sequential`: three forwards, upstream's way, less
activation memory). Modes (the VRAM manager's
placements): full (DiT + adapter resident), model_offload (resident while sampling, host RAM between segments:
the first step pays the upload), blockswap (the first `--keep` blocks of DiT and adapter resident, the rest
streamed from pinned host memory), sequential (every layer streamed: the least VRAM). Prints one JSON line per mode
and a markdown table for bench/README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "custom_nodes"))
sys.path.append(os.path.dirname(os.path.abspath(__file__)))  # bench/wan_gpu.py builds the random DiT

from bench_common import GIB, StepTimer, card_line, md_table, median, peak_gib, peak_reset  # noqa: E402
from bench_common import sync, write_json  # noqa: E402

WAN_I2V_14B = dict(patch_size=(1, 2, 2), num_attention_heads=40, attention_head_dim=128, in_channels=36,
                   out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=13824, num_layers=40, cross_attn_norm=True,
                   qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=1280, added_kv_proj_dim=5120,
                   rope_max_seq_len=1024)
TINY = dict(WAN_I2V_14B, num_attention_heads=2, attention_head_dim=16, text_dim=32, freq_dim=32, ffn_dim=64,
            num_layers=4, image_dim=24, added_kv_proj_dim=32)
MODES = ("full", "model_offload", "blockswap", "sequential")


def build(args, device):
    from wan_gpu import build_dit, build_dit_direct_bf16

    from vibeboard.foundry import talking_audio as A
    from vibeboard.models import loaders
    cfg = TINY if args.quick else WAN_I2V_14B
    t0 = time.perf_counter()
    if device.type == "cuda":  # random weights made where they run (bf16 directly: fp32 would need 56 GB)
        dit = loaders._cast(build_dit_direct_bf16(cfg, device), args.dtype, loaders.WAN_KEEP_FP32)
    else:
        dit = build_dit(cfg, device, args.dtype)
    torch.manual_seed(1)
    with torch.device(device):
        dim = cfg["num_attention_heads"] * cfg["attention_head_dim"]
        if args.quick:
            adapter = A.InfiniteTalkAdapter(dim, cfg["num_attention_heads"], cfg["num_layers"], 2 * 16, 8, 16, 4)
            A.adapter_from_state(adapter.state_dict(), dit.config)  # the published layout, strict-loaded
        else:  # the published shapes: 12 × 768 wav2vec2 features, 512 hidden, 32 tokens of 768, width 5120
            adapter = A.InfiniteTalkAdapter(dim, cfg["num_attention_heads"], cfg["num_layers"])
        adapter = adapter.to(args.dtype).eval().requires_grad_(False)
    sync(device)
    params = sum(p.numel() for p in dit.parameters()), sum(p.numel() for p in adapter.parameters())
    return dit, adapter, time.perf_counter() - t0, params


def inputs(args, dit, adapter, g):
    lat_t = (args.frames - 1) // 4 + 1
    h, w = args.height // 8, args.width // 8
    cfg = dit.config
    feat = adapter.audio_proj.feature_dim
    layers = 12 if feat == 12 * 768 else 2
    return dict(
        shape=(1, 16, lat_t, h, w),
        concat=torch.randn(1, 20, lat_t, h, w, generator=g),
        image=torch.randn(1, 257, cfg.image_dim, generator=g),
        text=torch.randn(1, 512, cfg.text_dim, generator=g), negative=torch.randn(1, 512, cfg.text_dim, generator=g),
        windows=torch.randn(args.frames, 5, layers, feat // layers, generator=g))


def run_mode(mode, args, dit, adapter, data, device):
    """One memory mode with its own VRAM manager (dropped after, so the pinned host copies of one mode are freed
    before the next mode makes its own: block swap and sequential offload each keep one)."""
    from vibeboard.foundry import audio_render as R
    from vibeboard.models.vram import VramManager
    from vibeboard.wan import conditioning as C
    from vibeboard.wan import sampler as S
    from vibeboard.wan.handle import WanHandle
    manager = VramManager(device=device, budget_bytes=None if device.type == "cuda" else 64 * GIB)
    handle = R.register_adapter(WanHandle.from_modules(manager=manager, dtype=args.dtype, transformer=dit), adapter)
    keys = handle.keys
    place = {"full": ("resident", None), "model_offload": ("resident", None),
             "blockswap": ("blockswap", args.keep), "sequential": ("sequential", None)}[mode]
    handle.placement = {"transformer": place, R.ADAPTER_PART: place}
    if mode == "model_offload":  # between segments the weights wait in host RAM: the first step uploads them
        for part in ("transformer", R.ADAPTER_PART):
            manager.offload(keys[part])
    else:  # placed before sampling starts
        for part in ("transformer", R.ADAPTER_PART):
            with handle.use(part):
                pass
    sync(device)
    peak_reset(device)
    from vibeboard.foundry import talking_audio as A
    cond = C.WanConditioning(prompt_embeds=data["text"], image_embeds=data["image"], concat_latents=data["concat"],
                             guidance=A.audio_guidance(data["text"], data["negative"], 5.0, 4.0),
                             extra={A.EXTRA_KEY: {"windows": data["windows"]}})
    clock = StepTimer(device).start()
    S.sample(handle, cond, S.SamplerSettings(steps=args.steps, cfg=1.0, shift=7.0, scheduler="euler", seed=0,
                                             attention=args.attention, batch_cfg=args.rows == "batched"),
             data["shape"], callback=clock,
             normalized=True)
    steps = clock.intervals()
    timed = steps[1:] or steps
    row = {"mode": mode, "s_per_step": round(median(timed), 3), "first_step_s": round(steps[0], 3),
           "steps": len(steps)}
    if mode == "blockswap":
        row["resident_blocks"] = args.keep
    if device.type == "cuda":   # GiB, under the JSON key the published tables use
        row["peak_vram_gb"] = round(peak_gib(device), 2)
    row["manager_peak_gb"] = round(manager.peak_device_bytes / GIB, 3)
    for key in keys.values():
        manager.unregister(key)
    del handle, manager
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny model on CPU")
    ap.add_argument("--frames", type=int, default=81)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=832)
    ap.add_argument("--steps", type=int, default=2, help="sampling steps per mode (the first is the warm-up)")
    ap.add_argument("--modes", nargs="*", default=list(MODES), choices=MODES)
    ap.add_argument("--keep", type=int, default=20, help="blocks kept resident in blockswap mode")
    ap.add_argument("--rows", choices=["batched", "sequential"], default="batched")
    ap.add_argument("--attention", default="auto")
    ap.add_argument("--budget-s", type=float, default=240.0, help="skip the remaining modes after this long")
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args(argv)
    if args.quick:
        args.frames, args.height, args.width, args.steps = 9, 32, 32, min(args.steps, 2)
        args.keep = min(args.keep, 2)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.quick else "cpu")
    args.dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    t_start = time.perf_counter()

    dit, adapter, build_s, (n_dit, n_adapter) = build(args, device)
    data = inputs(args, dit, adapter, torch.Generator().manual_seed(0))
    tokens = data["shape"][2] * data["shape"][3] * data["shape"][4] // 4
    print(json.dumps({"build_s": round(build_s, 1), "dit_params_b": round(n_dit / 1e9, 3),
                      "adapter_params_b": round(n_adapter / 1e9, 3), "tokens": tokens, "device": str(device),
                      "gpu": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                      "card_line": card_line(device)}), flush=True)
    rows = []
    for mode in args.modes:
        if time.perf_counter() - t_start > args.budget_s:
            rows.append({"mode": mode, "skipped": f"time budget {args.budget_s:.0f} s"})
            print(json.dumps(rows[-1]), flush=True)
            continue
        rows.append(run_mode(mode, args, dit, adapter, data, device))
        print(json.dumps(rows[-1]), flush=True)
    print(table(rows, args, tokens))
    print(f"total {time.perf_counter() - t_start:.1f} s")
    write_json(args.json, rows)
    return rows


def table(rows, args, tokens) -> str:
    head = (f"Talking head (Wan2.1-I2V-14B + InfiniteTalk adapter, random weights), {args.width}×{args.height}×"
            f"{args.frames} ({tokens} tokens), 3 guidance rows {args.rows}:\n\n")
    lines = []
    for r in rows:
        if "skipped" in r:
            lines.append([r["mode"], f"skipped ({r['skipped']})", "", ""])
            continue
        mode = r["mode"] + (f" (keep {r['resident_blocks']})" if "resident_blocks" in r else "")
        lines.append([mode, r["s_per_step"], r["first_step_s"], r.get("peak_vram_gb", "–")])
    return head + md_table(["mode", "s / step", "first step (s)", "peak VRAM (GB)"], lines)


if __name__ == "__main__":
    main()
