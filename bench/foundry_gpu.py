"""Character Foundry performances at full size with random weights: seconds per sampling step and peak VRAM in each
memory mode, through the one Wan runtime (`wan.sampler.sample`) exactly as the FlashPortrait node samples.

    python bench/foundry_gpu.py                  # Wan2.1-I2V-14B + FlashPortrait blocks, bf16, 832x480x81, 2 steps/mode
    python bench/foundry_gpu.py --quick          # tiny config on CPU (checks the script; a test runs it)
    python bench/foundry_gpu.py --json out.json  # also write the rows

What runs: FlashPortrait's DiT (the 14B I2V architecture, random bf16 weights built directly on the device, with the
per-block expression projections emo_k/emo_v [5120, 2048] installed) in FlashPortrait's conditioning (I2V mask +
latents, CLIP-H image tokens, per-frame expression tokens from the portrait encoder in its published shape, context
windows, upstream's text + expression guidance: with the default text CFG 1 that is 2 DiT passes per window per
step). 81 frames = 21 latent frames = one window (upstream's window is 51). The VAE, umT5 and CLIP are not loaded:
their outputs are random tensors of the real shapes, so the peak VRAM is the sampling's (DiT + activations).

Memory modes (`WanHandle.with_memory_mode`, the node's names in brackets): full [full] — DiT resident and kept;
model_offload [model_cpu_offload] — resident while sampling, back to pinned host RAM after; sequential
[sequential_cpu_offload] — block swap with no block resident (each block streamed in per forward).
"first step" includes moving the weights into place for that mode; "step" is the steady second step.

Other sampling paths (e.g. the audio-driven talking head) plug in through PATHS: a function
(args, device, dtype) → (handle, cond, shape, note) and `time_modes` does the rest.
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

from bench_common import StepTimer, card_line, default_dtype, md_table, peak_gib, peak_reset  # noqa: E402
from bench_common import sync, write_json  # noqa: E402
from vibeboard.foundry import flashportrait as fp  # noqa: E402
from vibeboard.foundry import flashportrait_wan as fw  # noqa: E402
from vibeboard.models.vram import VramManager  # noqa: E402
from vibeboard.wan import sampler as S  # noqa: E402
from vibeboard.wan.handle import MEMORY_MODES, WanHandle  # noqa: E402

# Wan2.1-I2V-14B (config.json of Wan-AI/Wan2.1-I2V-14B-480P-Diffusers) and FlashPortrait's published sizes
I2V_14B = dict(patch_size=(1, 2, 2), num_attention_heads=40, attention_head_dim=128, in_channels=36, out_channels=16,
               text_dim=4096, freq_dim=256, ffn_dim=13824, num_layers=40, cross_attn_norm=True,
               qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=1280, added_kv_proj_dim=5120,
               rope_max_seq_len=1024)
PORTRAIT_ENCODER = dict(out_dim=2048, resampler_dim=1280, depth=4, heads=20, dim_head=64)
CLIP_TOKENS, CLIP_DIM = 257, 1280
TINY = dict(I2V_14B, num_attention_heads=2, attention_head_dim=16, text_dim=32, freq_dim=32, ffn_dim=64,
            num_layers=2, image_dim=24, added_kv_proj_dim=32)
TINY_ENCODER = dict(out_dim=32, resampler_dim=32, depth=1, heads=2, dim_head=16)


def build_direct(factory, device, dtype):
    """Construct straight on the device in the compute dtype (a 14B model in fp32 on the host would need 56 GB)."""
    with default_dtype(dtype), torch.device(device):
        return factory()


def flashportrait_case(args, device, dtype):
    """FlashPortrait's handle + conditioning at the benchmark size. Returns (handle, cond, shape, note)."""
    from diffusers import WanTransformer3DModel
    cfg, enc_cfg = (TINY, TINY_ENCODER) if args.quick else (I2V_14B, PORTRAIT_ENCODER)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = build_direct(lambda: WanTransformer3DModel(**cfg), device, dtype).eval().requires_grad_(False)
    dim, emo_dim = cfg["num_attention_heads"] * cfg["attention_head_dim"], enc_cfg["out_dim"]
    emo = {i: {"k": torch.randn(dim, emo_dim, device=device, dtype=dtype) * 0.02,
               "v": torch.randn(dim, emo_dim, device=device, dtype=dtype) * 0.02} for i in range(cfg["num_layers"])}
    build_direct(lambda: fp.patch_expression_attention(model, emo), device, dtype)
    del emo
    encoder = build_direct(lambda: fp.PortraitEncoder(**enc_cfg), device, dtype).eval()
    sync(device)
    build_s = time.perf_counter() - t0
    manager = VramManager(device=device) if device.type == "cuda" else VramManager(device=device, budget_bytes=2 ** 34)
    manager.register("flashportrait_dit", model, mode="resident")   # built on the device: no load needed
    # The VAE is never run here (latents stay normalised); the handle reads the latent layout from its config,
    # which a tiny Wan2.1 VAE shares with the real one (16 channels, 4x temporal, 8x spatial).
    from vibeboard.models import tiny
    manager.register("vae", tiny.build_vae(), mode="auto")
    base = WanHandle(variant="i2v", keys={"vae": "vae"}, manager=manager, dtype=dtype)
    handle = fw.adapt(base, "flashportrait_dit", dtype)

    frames, height, width = args.frames, args.height, args.width
    lat_t = (frames - 1) // 4 + 1
    size = min(args.context_size, lat_t)
    h, w = height // 8, width // 8
    g = torch.Generator("cpu").manual_seed(1)
    feats = torch.randn(1, frames, sum(fp.FEATURE_SPLIT), generator=g)
    t0 = time.perf_counter()
    with torch.no_grad():
        tokens = encoder(feats.to(device, dtype)).float().cpu()
    sync(device)
    encoder_s = time.perf_counter() - t0
    del encoder
    text = torch.randn(2, 512, cfg["text_dim"], generator=g) * 0.1
    image = torch.randn(1, CLIP_TOKENS if not args.quick else 5, cfg["image_dim"], generator=g)
    concat = torch.cat([torch.zeros(1, 4, size, h, w), torch.randn(1, 16, size, h, w, generator=g)], 1)
    concat[:, :, 0] = 1.0
    cond, shape = fw.build_conditioning(handle, torch.zeros(1, height, width, 3), text[:1], text[1:], tokens, frames,
                                        height, width, text_cfg=args.text_cfg, emo_cfg=args.emo_cfg,
                                        context_size=args.context_size, context_overlap=args.context_overlap,
                                        image_embeds=image, concat_latents=concat)
    windows = len(cond.windows.spans(lat_t))
    note = (f"{sum(p.numel() for p in model.parameters()) / 1e9:.2f} B params (DiT + expression), built in "
            f"{build_s:.1f} s; portrait encoder {frames} frames {encoder_s:.2f} s; {lat_t} latent frames, "
            f"{windows} window(s) of {size}, {len(cond.guidance.passes)} passes per window per step, "
            f"{lat_t * h * w // 4} tokens per window")
    return handle, cond, shape, note


PATHS = {"flashportrait": flashportrait_case}


def time_modes(handle, cond, shape, steps: int, modes=MEMORY_MODES, seed: int = 0, batch_cfg: bool = True):
    """Sample `steps` steps in each memory mode; one row per mode: first step, steady step, peak VRAM.
    batch_cfg: the guidance passes in one forward (the sampler's default) or one forward each."""
    device = handle.device
    rows = []
    for mode in modes:
        h = handle.with_memory_mode(mode)
        clock = StepTimer(device)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        peak_reset(device)
        settings = S.SamplerSettings(steps=steps, cfg=1.0, shift=5.0, scheduler="euler", seed=seed,
                                     batch_cfg=batch_cfg)
        out = S.sample(h, cond, settings, shape, callback=clock.start(), normalized=True)
        sync(device)
        first, *steady = clock.intervals()
        row = {"mode": mode, "first_step_s": round(first, 3),
               "step_s": round(min(steady), 3) if steady else None,
               "finite": bool(torch.isfinite(out).all())}
        if device.type == "cuda":
            row["peak_vram_gib"] = round(peak_gib(device), 2)
            row["vram_after_gib"] = round(torch.cuda.memory_allocated(device) / 2 ** 30, 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def table(rows, note: str = "") -> str:
    lines = md_table(["memory mode", "s / step", "first step (s)", "peak VRAM (GiB)", "VRAM after (GiB)"],
                     [[r["mode"], r["step_s"], r["first_step_s"], r.get("peak_vram_gib", "-"),
                       r.get("vram_after_gib", "-")] for r in rows])
    return lines + (f"\n\n{note}" if note else "")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny config on CPU (a smoke test)")
    ap.add_argument("--path", choices=sorted(PATHS), default="flashportrait")
    ap.add_argument("--frames", type=int, default=81)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=832)
    ap.add_argument("--steps", type=int, default=2, help="sampling steps per memory mode (≥ 2 for a steady step)")
    ap.add_argument("--modes", nargs="+", choices=MEMORY_MODES, default=list(MEMORY_MODES))
    ap.add_argument("--text-cfg", type=float, default=1.0, help="upstream default 1 (2 passes); ≠ 1 → 3 passes")
    ap.add_argument("--emo-cfg", type=float, default=4.0)
    ap.add_argument("--context-size", type=int, default=51, help="latent frames per window (upstream 51)")
    ap.add_argument("--context-overlap", type=int, default=30)
    ap.add_argument("--rows", choices=["batched", "sequential"], default="batched",
                    help="guidance passes in one forward (batch_cfg, the default) or one forward each")
    ap.add_argument("--json", default="", help="also write the rows and the note here")
    args = ap.parse_args(argv)
    if args.quick:
        device, dtype = torch.device("cpu"), torch.float32
        args.frames, args.height, args.width = 9, 32, 32
        args.context_size, args.context_overlap = 2, 1   # two windows: the blending path runs too
    else:
        if not torch.cuda.is_available():
            sys.exit("no CUDA device: run with --quick for the CPU check")
        device, dtype = torch.device("cuda"), torch.bfloat16
    print(card_line(device), flush=True)
    handle, cond, shape, note = PATHS[args.path](args, device, dtype)
    rows = time_modes(handle, cond, shape, max(2, args.steps), args.modes, batch_cfg=args.rows == "batched")
    header = (f"{args.path}: {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}, {str(dtype)}, "
              f"{args.width}x{args.height}x{args.frames}, {args.steps} steps per mode. {note}")
    print(table(rows, header))
    write_json(args.json, {"rows": rows, "note": header})
    return rows


if __name__ == "__main__":
    main()
