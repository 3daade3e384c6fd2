"""Wan GPU benchmark: diffusers' default path vs ours, VAE decode, swap, 14B block swap.

    python bench/wan_gpu.py            # H100-class GPU, full size (≈5–7 min)
    python bench/wan_gpu.py --quick    # tiny models on CPU: checks that every section runs

Random weights (built from the published configs, no download). Every section catches its own errors and the
table is printed at the end whatever happened. `--json out.json` also writes the numbers.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
import traceback

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "custom_nodes"), os.path.join(ROOT, "bench")]

from bench_common import (StepTimer, card_line, default_dtype, max_abs_err, md_table, median, peak_gb,  # noqa: E402
                          peak_reset, sync, timed, write_json)
from vibeboard.models import loaders, tiny  # noqa: E402
from vibeboard.models.blockswap import BlockSwap  # noqa: E402
from vibeboard.models.vram import VramManager  # noqa: E402
from vibeboard.wan import sampler as S  # noqa: E402
from vibeboard.wan.conditioning import WanConditioning  # noqa: E402

CFG_13B = dict(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16,
               out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
               qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)
CFG_14B = dict(CFG_13B, num_attention_heads=40, ffn_dim=13824, num_layers=40)
ROWS: list = []
T0 = time.perf_counter()
RESULTS: dict = {}


def row(section, name, value, unit="", note=""):
    ROWS.append((section, name, value, unit, note))
    RESULTS.setdefault(section, {})[name] = value
    shown = f"{value:.4g}" if isinstance(value, float) else str(value)
    print(f"  {section:<12} {name:<44} {shown:>12} {unit:<8} {note}", flush=True)


def build_dit(cfg, device, dtype=torch.bfloat16):
    """Random-weight Wan DiT on `device`, half precision with diffusers' fp32-kept modules."""
    from diffusers import WanTransformer3DModel
    torch.manual_seed(0)
    with torch.device(device):
        model = WanTransformer3DModel(**cfg)
    return loaders._cast(model, dtype, loaders.WAN_KEEP_FP32).eval().requires_grad_(False)


def build_dit_direct_bf16(cfg, device):
    """14B: constructed directly in bf16 on the GPU (fp32 construction would need 56 GB)."""
    from diffusers import WanTransformer3DModel
    with default_dtype(torch.bfloat16), torch.device(device):
        model = WanTransformer3DModel(**cfg)
    return model.eval().requires_grad_(False)


def dit_flops(cfg, tokens, text_len=512, batch=1):
    d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    f, n, L = cfg["ffn_dim"], tokens, text_len
    per = (4 * 2 * n * d * d            # self-attn q k v o
           + 4 * n * n * d              # QK^T and PV
           + 2 * 2 * n * d * d + 2 * 2 * L * d * d + 4 * n * L * d   # cross-attn
           + 2 * 2 * n * d * f)         # ffn
    return batch * cfg["num_layers"] * per


# ---- sections -------------------------------------------------------------------------------------
def section_dit(args, device, state):
    cfg = CFG_13B if not args.quick else dict(tiny.TINY_T2V, text_dim=32)
    frames, h, w = (args.frames, 480, 832) if not args.quick else (9, 32, 32)
    model = build_dit(cfg, device)
    state["model"], state["cfg"] = model, cfg
    t_lat, lh, lw = (frames - 1) // 4 + 1, h // 8, w // 8
    tokens = t_lat * (lh // 2) * (lw // 2)
    g = torch.Generator("cpu").manual_seed(1)
    x = torch.randn(1, 16, t_lat, lh, lw, generator=g).to(device)
    text_dim = cfg["text_dim"]
    pos = (torch.randn(1, 512, text_dim, generator=g) * 0.1).to(device, torch.bfloat16)
    neg = (torch.randn(1, 512, text_dim, generator=g) * 0.1).to(device, torch.bfloat16)
    t = torch.tensor([700.0], device=device)
    state.update(x=x, pos=pos, neg=neg, t=t, tokens=tokens)
    flops = dit_flops(cfg, tokens)
    row("setup", "DiT params (B)", sum(p.numel() for p in model.parameters()) / 1e9)
    row("setup", "tokens per forward", tokens, note=f"{frames}x{h}x{w}")

    def default_forward():
        return model(hidden_states=x.to(torch.bfloat16), timestep=t, encoder_hidden_states=pos,
                     return_dict=False)[0]

    with torch.no_grad():
        peak_reset()
        sec, ref = timed(default_forward, args.reps)
        row("diffusers", "DiT forward (default SDPA)", sec, "s")
        row("diffusers", "TFLOP/s", flops / sec / 1e12)
        row("diffusers", "peak VRAM forward", peak_gb(), "GB")
        state["ref_forward"] = ref.float()
        state["default_forward_s"] = sec


def section_pipeline(args, device, state):
    """diffusers' WanPipeline itself (two forwards per CFG step), timed per step with a callback."""
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline
    model, x = state["model"], state["x"]
    vae = state.get("vae") or AutoencoderKLWan(**({} if not args.quick else tiny.TINY_VAE)).to(device).eval()
    state["vae"] = vae
    sched = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                    num_train_timesteps=1000, flow_shift=3.0)
    pipe = WanPipeline(tokenizer=None, text_encoder=None, transformer=model, vae=vae, scheduler=sched)
    clock = StepTimer()
    steps = args.steps
    _, c, T, lh, lw = x.shape
    peak_reset()
    with torch.no_grad():
        out = pipe(prompt_embeds=state["pos"], negative_prompt_embeds=state["neg"], height=lh * 8, width=lw * 8,
                   num_frames=(T - 1) * 4 + 1, num_inference_steps=steps, guidance_scale=5.0,
                   output_type="latent", callback_on_step_end=clock.diffusers_callback,
                   generator=torch.Generator(device).manual_seed(0))
    per = clock.intervals()
    sec = median(per) if per else float("nan")
    row("diffusers", "CFG step (WanPipeline, 2 forwards)", sec, "s", f"median of {len(per)} steps")
    row("diffusers", "peak VRAM pipeline", peak_gb(), "GB")
    state["pipeline_latents"] = out.frames.float() if hasattr(out, "frames") else None
    state["default_step_s"] = sec


def section_ours(args, device, state):
    model, x, pos, neg, t = (state[k] for k in ("model", "x", "pos", "neg", "t"))
    cfg, tokens = state["cfg"], state["tokens"]
    flops = dit_flops(cfg, tokens)
    cond = WanConditioning(prompt_embeds=pos, negative_embeds=neg)
    ref = state.get("ref_forward")
    with torch.no_grad():
        for backend in (["cudnn", "flash"] if device.type == "cuda" else ["sdpa"]):
            def fwd():
                with S.attention_context(backend, device):
                    return S.predict(model, x, t, pos, cond, torch.bfloat16)
            try:
                sec, out = timed(fwd, args.reps)
                diff = max_abs_err(out, ref) if ref is not None else float("nan")
                row("ours", f"DiT forward ({backend} attention)", sec, "s",
                    f"max|diff| vs default {diff:.3g} (ref max {ref.abs().max().item():.3g})")
                row("ours", f"TFLOP/s ({backend})", flops / sec / 1e12)
            except Exception as exc:
                row("ours", f"DiT forward ({backend})", "error", note=f"{type(exc).__name__}: {exc}"[:120])
        backend = "cudnn" if device.type == "cuda" else "sdpa"

        def cfg_step(batch):
            with S.attention_context(backend, device):
                return S.guided(model, x, t, cond, 5.0, torch.bfloat16, batch_cfg=batch)

        def cfg_default():
            pos_o = model(hidden_states=x.to(torch.bfloat16), timestep=t, encoder_hidden_states=pos,
                          return_dict=False)[0].float()
            neg_o = model(hidden_states=x.to(torch.bfloat16), timestep=t, encoder_hidden_states=neg,
                          return_dict=False)[0].float()
            return neg_o + 5.0 * (pos_o - neg_o)

        _, ref_cfg = timed(cfg_default, 1, warmup=0)
        peak_reset()
        for batch in (True, False):
            sec, out = timed(lambda: cfg_step(batch), args.reps)
            diff = max_abs_err(out, ref_cfg)
            row("ours", f"CFG step ({backend}, {'batched' if batch else 'sequential'} cond/uncond)", sec, "s",
                f"max|diff| vs default CFG {diff:.3g}")
        row("ours", "peak VRAM CFG step", peak_gb(), "GB")
        state["cfg_ref"] = ref_cfg
    try:
        section_sampler(args, device, state)
    except Exception as exc:
        row("ours", "S.sample per step", "error", note=f"{type(exc).__name__}: {exc}"[:120])
        traceback.print_exc()
    with torch.no_grad():
        if args.fuse:
            try:
                for blk in model.blocks:
                    blk.attn1.fuse_projections()
                    blk.attn2.fuse_projections()
                sec, out = timed(lambda: cfg_step(True), args.reps)
                row("ours", "CFG step + fused QKV", sec, "s",
                    f"max|diff| vs default CFG {max_abs_err(out, ref_cfg):.3g}")
            except Exception as exc:
                row("ours", "CFG step + fused QKV", "error", note=f"{type(exc).__name__}: {exc}"[:120])
        if args.compile and device.type == "cuda" and time.perf_counter() - T0 > args.budget_s:
            row("ours", "CFG step + compiled blocks", "skipped", note="time budget (--budget-s)")
        elif args.compile and device.type == "cuda":
            try:
                t0 = time.perf_counter()
                for blk in model.blocks:
                    blk.compile(fullgraph=False, dynamic=False)
                cfg_step(True)
                sync()
                row("ours", "torch.compile (blocks) warm-up", time.perf_counter() - t0, "s")
                sec, out = timed(lambda: cfg_step(True), args.reps)
                row("ours", "CFG step + compiled blocks", sec, "s",
                    f"max|diff| vs default CFG {max_abs_err(out, ref_cfg):.3g}")
            except Exception as exc:
                row("ours", "CFG step + compiled blocks", "error", note=f"{type(exc).__name__}: {exc}"[:120])


def section_sampler(args, device, state):
    """Our whole sampler loop (VRAM manager, batched CFG, cuDNN attention, UniPC) timed per step."""
    from diffusers import AutoencoderKLWan
    from vibeboard.wan.handle import WanHandle
    vae = state.get("vae") or AutoencoderKLWan(**({} if not args.quick else tiny.TINY_VAE)).to(device).eval()
    state["vae"] = vae
    mgr = VramManager(device=device) if not args.quick else VramManager(budget_bytes=2 ** 34, device=device)
    mgr.register("dit", state["model"])
    mgr.register("vae", vae)
    handle = WanHandle(variant="t2v", keys={"transformer": "dit", "vae": "vae"}, manager=mgr,
                       dtype=torch.bfloat16)
    cond = WanConditioning(prompt_embeds=state["pos"], negative_embeds=state["neg"])
    clock = StepTimer()
    settings = S.SamplerSettings(steps=args.steps, cfg=5.0, shift=3.0, attention="auto")
    S.sample(handle, cond, settings, tuple(state["x"].shape), callback=clock)
    per = clock.intervals()
    row("ours", "S.sample per step (whole loop, auto attention)", median(per) if per else float("nan"),
        "s", f"median of {len(per)}; diffusers pipeline {state.get('default_step_s', float('nan')):.3g} s")
    # hand the DiT and VAE back, outside the manager's control, on the device for the following sections
    mgr.free(unload=True)
    state["model"].to(device)
    vae.to(device)


def section_vae(args, device, state):
    from diffusers import AutoencoderKLWan
    vae = state.get("vae") or AutoencoderKLWan(**({} if not args.quick else tiny.TINY_VAE)).to(device).eval()
    vae = vae.to(torch.bfloat16)
    z = torch.randn_like(state["x"]).to(torch.bfloat16)
    with torch.no_grad():
        vae.decode(z[:, :, :2])  # warm-up on 2 latent frames
        sync()
        peak_reset()
        t0 = time.perf_counter()
        out = vae.decode(z).sample
        sync()
        row("vae", f"decode {tuple(out.shape[2:])}", time.perf_counter() - t0, "s")
        row("vae", "peak VRAM decode", peak_gb(), "GB")
    state.pop("vae", None)
    del vae, out
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def section_swap(args, device, state):
    model = state["model"]
    nbytes = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
    with torch.no_grad():
        before = model(hidden_states=state["x"].to(torch.bfloat16), timestep=state["t"],
                       encoder_hidden_states=state["pos"], return_dict=False)[0].float()
    mgr = VramManager(budget_bytes=int(nbytes * 1.5), device=device)
    mgr.register("dit", model)
    mgr.load("dit")            # packs into a flat buffer + pinned host copy (one-time)
    mgr.offload("dit")
    mgr.load("dit")
    sync()
    outs, ins = [], []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        mgr.offload("dit")
        sync()
        t1 = time.perf_counter()
        mgr.load("dit")
        sync()
        outs.append(t1 - t0)
        ins.append(time.perf_counter() - t1)
    swap = sorted(a + b for a, b in zip(outs, ins))[len(outs) // 2]
    row("swap", "model bytes", nbytes / 1e9, "GB")
    row("swap", "GPU → pinned (manager)", sorted(outs)[len(outs) // 2], "s")
    row("swap", "pinned → GPU (manager)", sorted(ins)[len(ins) // 2], "s")
    pin = torch.cuda.is_available()
    host = torch.empty(nbytes, dtype=torch.uint8, pin_memory=pin)
    dev = torch.empty(nbytes, dtype=torch.uint8, device=device)

    def plain():
        host.copy_(dev, non_blocking=True)
        sync()
        dev.copy_(host, non_blocking=True)
        sync()
    plain_s, _ = timed(plain, args.reps)
    row("swap", "plain tensor copy out+in (same bytes)", plain_s, "s")
    row("swap", "swap / plain copy", swap / plain_s, "x", "goal ≤ 1.2")
    with torch.no_grad():
        out = model(hidden_states=state["x"].to(torch.bfloat16), timestep=state["t"],
                    encoder_hidden_states=state["pos"], return_dict=False)[0].float()
    row("swap", "forward after the swaps == before", bool(torch.equal(out, before)),
        note=f"max|diff| {max_abs_err(out, before):.3g}")
    mgr.unregister("dit")
    del host, dev


def section_blockswap(args, device, state):
    for k in ("model", "vae"):
        state.pop(k, None)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    cfg = CFG_14B if not args.quick else dict(tiny.TINY_T2V, text_dim=32, num_layers=6)
    frames = args.frames_14b if not args.quick else 9
    h, w = (480, 832) if not args.quick else (32, 32)
    t0 = time.perf_counter()
    model = build_dit_direct_bf16(cfg, device) if device.type == "cuda" else build_dit(cfg, device)
    row("blockswap", "build 14B-architecture DiT", time.perf_counter() - t0, "s",
        f"{sum(p.numel() for p in model.parameters()) / 1e9:.2f} B params")
    g = torch.Generator("cpu").manual_seed(2)
    x = torch.randn(1, 16, (frames - 1) // 4 + 1, h // 8, w // 8, generator=g).to(device, torch.bfloat16)
    emb = (torch.randn(1, 512, cfg["text_dim"], generator=g) * 0.1).to(device, torch.bfloat16)
    t = torch.tensor([700.0], device=device)
    backend = "cudnn" if device.type == "cuda" else "sdpa"

    def fwd():
        with torch.no_grad(), S.attention_context(backend, device):
            return model(hidden_states=x, timestep=t, encoder_hidden_states=emb, return_dict=False)[0]
    peak_reset()
    resident, ref = timed(fwd, args.reps)
    row("blockswap", f"forward fully resident ({frames} frames)", resident, "s")
    row("blockswap", "peak VRAM resident", peak_gb(), "GB")
    for n, keep in enumerate(args.resident_blocks):
        if n and time.perf_counter() - T0 > args.budget_s:
            row("blockswap", f"keep {keep} blocks", "skipped", note="time budget (--budget-s)")
            continue
        t0 = time.perf_counter()
        swap = BlockSwap(model, device, resident=keep, slots=2)
        sync()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        row("blockswap", f"set up swap (keep {keep} blocks)", time.perf_counter() - t0, "s")
        peak_reset()
        sec, out = timed(fwd, args.reps)
        row("blockswap", f"forward, {len(swap.swapped)} of {len(swap.blocks)} blocks streamed", sec, "s",
            f"{sec / resident:.2f}x resident (goal ≤ 1.3); max|diff| {max_abs_err(out, ref):.3g}")
        row("blockswap", f"peak VRAM (keep {keep})", peak_gb(), "GB")
        swap.detach(to_host=False)
        for j in swap.swapped:  # back on the GPU for the next setting
            swap.blocks[j].to(device)
        del swap
    del model


SECTIONS = [("DiT forward, diffusers default", section_dit), ("WanPipeline CFG step", section_pipeline),
            ("our path", section_ours), ("VAE decode", section_vae), ("model swap", section_swap),
            ("14B block swap", section_blockswap)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny models on CPU (a smoke test of every section)")
    ap.add_argument("--frames", type=int, default=81)
    ap.add_argument("--frames-14b", type=int, default=81,
                    help="frames for the 14B block-swap section (lower it if it does not fit)")
    ap.add_argument("--resident-blocks", type=int, nargs="+", default=[0, 20])
    ap.add_argument("--steps", type=int, default=4, help="WanPipeline steps timed")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--no-compile", dest="compile", action="store_false")
    ap.add_argument("--no-fuse", dest="fuse", action="store_false")
    ap.add_argument("--only", nargs="*", help="section numbers to run (1-6)")
    ap.add_argument("--json", help="write results here")
    ap.add_argument("--budget-s", type=float, default=330,
                    help="skip optional parts (compile, extra block-swap settings) once this much time has passed")
    args = ap.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.quick else "cpu")
    if args.quick:
        args.reps, args.steps, args.resident_blocks = 1, 3, [0, 2]
    print(f"device {device}: {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}; "
          f"torch {torch.__version__}", flush=True)
    print(card_line(device), flush=True)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    state: dict = {}
    t_start = time.perf_counter()
    for i, (title, fn) in enumerate(SECTIONS, 1):
        if args.only and str(i) not in args.only:
            continue
        print(f"[{i}] {title}", flush=True)
        t0 = time.perf_counter()
        try:
            fn(args, device, state)
        except Exception as exc:
            row(title.split()[0].lower(), "SECTION FAILED", "error", note=f"{type(exc).__name__}: {exc}"[:160])
            traceback.print_exc()
        print(f"    ({time.perf_counter() - t0:.1f} s)", flush=True)
    print("\n" + md_table(["section", "measurement", "value", "unit", "note"],
                          [(sec, name, f"{value:.4g}" if isinstance(value, float) and not math.isnan(value) else value,
                            unit, note) for sec, name, value, unit, note in ROWS]))
    total = time.perf_counter() - t_start
    print(f"\ntotal {total:.1f} s")
    write_json(args.json, {"device": str(device), "card_line": card_line(device), "results": RESULTS,
                           "total_s": total}, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
