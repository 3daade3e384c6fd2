"""A whole Wan clip end to end: our CLI path vs diffusers' `WanPipeline` on the same modules, one process.

    python bench/clip_e2e.py                  # H200/H100: Wan2.1-T2V-1.3B, 832x480x81, 50 steps, CFG 5
    python bench/clip_e2e.py --steps 4 --cfg 1  # fast mode (how users run step-distilled LoRAs)
    python bench/clip_e2e.py --quick          # tiny models on CPU: checks the bench still runs (numbers meaningless)
    python bench/clip_e2e.py --steps 20 --lossy --no-diffusers   # + the lossy modes against bf16 (clip_lossy.py)
    python bench/clip_e2e.py --precision fp8 --step-cache 0.1    # ours (the CLI runs) in a lossy mode

1. Writes random-weight models in the published ComfyUI single-file layout (DiT `wan2.1_t2v_1.3B_bf16`, VAE
   `wan_2.1_vae`, UMT5-XXL `umt5_xxl_fp8_e4m3fn_scaled` + a tokenizer folder) to a scratch models folder.
2. Ours: `vibeboard run workflows/wan_basics.api.json` through the embedded executor (the real CLI entry point),
   twice: a first run (files → MP4, models loaded from page cache) and a warm run (models loaded, prompts cached).
   Each node is timed (CUDA synchronised at its end); sampling per step = the sampler node / steps. The workflow
   decodes with Wan Decode to Video MP4 (each decoded time chunk is encoded while the next decodes), one stage
   "decode + MP4"; diffusers' separate decode and MP4 are also summed into that row for the comparison.
3. diffusers: `WanPipeline` built from the *same* module objects (our loader's), same prompts, size, steps, CFG,
   shift; decode and MP4 (the same PyAV writer as our Save Video node) timed the same way. Always eager, as
   diffusers' users run it: with `--compile`, the blocks our sampler compiled in place are set aside for its run
   (runs before 2026-12-01 session 4 let diffusers call our compiled blocks).
Prints one table (load, text encode, sampling, per step, decode, MP4, decode + MP4, text→MP4, files→MP4) and
ours/diffusers.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "custom_nodes")]
sys.path.append(os.path.dirname(os.path.abspath(__file__)))   # clip_lossy.py beside this file

from vibeboard.models import loaders, tiny  # noqa: E402

WORKFLOW = os.path.join(ROOT, "workflows", "wan_basics.api.json")
DIT_NAME = "wan2.1_t2v_1.3B_bf16.safetensors"
VAE_NAME = "wan_2.1_vae.safetensors"
TE_NAME = "umt5_xxl_fp8_e4m3fn_scaled.safetensors"
# Published configs (Wan2.1-T2V-1.3B transformer/config.json, google/umt5-xxl encoder).
WAN_1_3B = dict(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16, out_channels=16,
                text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
                qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)
UMT5_XXL = dict(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                relative_attention_num_buckets=32, relative_attention_max_distance=128,
                feed_forward_proj="gated-gelu", is_encoder_decoder=False, pad_token_id=0, eos_token_id=1)
STAGES = ["load", "text encode", "sampling", "per step", "decode", "MP4", "decode + MP4", "text → MP4",
          "files → MP4"]


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def write_models(root: str, quick: bool, device: str) -> None:
    """The ComfyUI `models/` tree the workflow names, random weights, published key names and dtypes."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel
    te_dir = os.path.join(root, "text_encoders")
    if os.path.isfile(os.path.join(te_dir, "umt5-xxl-tokenizer", "tokenizer.json")):
        return   # written by an earlier run with the same --workdir (another checkout's code, say)
    if quick:
        tiny.save_comfy_transformer(tiny.build_transformer("t2v"), os.path.join(root, "diffusion_models", DIT_NAME))
        tiny.save_comfy_vae(tiny.build_vae(), os.path.join(root, "vae", VAE_NAME))
        tiny.save_comfy_umt5(tiny.build_umt5(), os.path.join(te_dir, TE_NAME), fp8_scaled=True)
    else:
        torch.manual_seed(0)
        old = torch.get_default_dtype()
        torch.set_default_dtype(torch.bfloat16)   # built on the GPU in bf16: seconds, not minutes of CPU init
        try:
            with torch.device(device):
                dit = WanTransformer3DModel(**WAN_1_3B)
                tiny.save_comfy_transformer(dit, os.path.join(root, "diffusion_models", DIT_NAME))
                del dit
                vae = AutoencoderKLWan()          # the published Wan2.1 VAE config is diffusers' default
                tiny.save_comfy_vae(vae, os.path.join(root, "vae", VAE_NAME))
                del vae
                te = UMT5EncoderModel(UMT5Config(**UMT5_XXL))
                tiny.save_comfy_umt5(te, os.path.join(te_dir, TE_NAME), fp8_scaled=True)
                del te
        finally:
            torch.set_default_dtype(old)
        torch.cuda.empty_cache()
    tiny.save_tokenizer(os.path.join(te_dir, "umt5-xxl-tokenizer"))


# ---- ours: the CLI --------------------------------------------------------------------------------
class NodeTimer:
    """Wraps each node class's FUNCTION so its wall time (CUDA synchronised) lands in `times[stage]`.
    Wan Decode to Video MP4 overlaps the two, so it is one stage; the separate nodes (the workflow before it
    used that node) keep their own rows, and run_ours sums them into "decode + MP4"."""
    STAGE_OF = {"VBWanModelLoader": "load", "VBWanTextEncode": "text encode", "VBWanT2V": "sampling",
                "VBWanDecodeVideo": "decode + MP4", "VBWanVAEDecode": "decode", "VBSaveVideo": "MP4"}

    def __init__(self, classes: dict):
        self.times: dict = {}
        self.restore = []
        for name, stage in self.STAGE_OF.items():
            cls = classes[name]
            fn_name = cls.FUNCTION
            original = getattr(cls, fn_name)
            self.restore.append((cls, fn_name, original))
            setattr(cls, fn_name, self._wrap(original, stage))

    def _wrap(self, original, stage):
        def timed(*args, **kwargs):
            sync()
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                sync()
                self.times[stage] = self.times.get(stage, 0.0) + time.perf_counter() - t0
        return timed

    def close(self):
        for cls, fn_name, original in self.restore:
            setattr(cls, fn_name, original)


def run_ours(args, models: str, out: str) -> dict:
    from vibeboard_runner import cli
    from vibeboard_runner.registry import NodeRegistry
    classes = NodeRegistry.default(embedded=True).classes
    timer = NodeTimer(classes)
    argv = ["run", WORKFLOW, "--models-dir", models, "--output-dir", out, "--temp-dir", os.path.join(out, "temp"),
            "--quiet", "--set", f"3.steps={args.steps}", "--set", f"3.cfg={args.cfg}",
            "--set", f"3.shift={args.shift}", "--set", f"3.compile={str(args.compile).lower()}",
            "--set", f"3.precision={args.precision}", "--set", f"3.step_cache={args.step_cache}",
            "--set", f"3.attention={args.attention}",
            "--set", f"4.width={args.width}",
            "--set", f"4.height={args.height}", "--set", f"4.length={args.frames}"]
    try:
        sync()
        t0 = time.perf_counter()
        code = cli.main(argv)
        sync()
        total = time.perf_counter() - t0
    finally:
        timer.close()
    if code != 0:
        raise SystemExit(f"vibeboard run failed with exit code {code}")
    t = timer.times
    from vibeboard.wan import sampler as S
    t["_sampler"] = dict(S.LAST_STATS)   # forwards, precision, step-cache skips of this run
    t["files → MP4"] = total
    t["text → MP4"] = total - t.get("load", 0.0)
    t["per step"] = t["sampling"] / args.steps
    if "decode + MP4" not in t and "decode" in t and "MP4" in t:
        t["decode + MP4"] = t["decode"] + t["MP4"]
    return t


# ---- diffusers on the same modules -----------------------------------------------------------------
def load_handle(models: str):
    """The Wan handle over the bench's files (the modules our CLI runs loaded: cached, not read again)."""
    from vibeboard.wan.handle import load_wan
    te_dir = os.path.join(models, "text_encoders")
    return load_wan(os.path.join(models, "diffusion_models", DIT_NAME), os.path.join(models, "vae", VAE_NAME),
                    os.path.join(te_dir, TE_NAME), os.path.join(te_dir, "umt5-xxl-tokenizer"))


@contextlib.contextmanager
def eager_blocks(model):
    """diffusers as its users run it: `--compile` compiles our DiT's blocks in place (the same module objects
    the pipeline gets), so for diffusers' column the blocks' compiled call is set aside and restored after."""
    saved = [(blk, blk.__dict__.get("_compiled_call_impl")) for blk in getattr(model, "blocks", [])]
    for blk, _ in saved:
        blk._compiled_call_impl = None
    try:
        yield model
    finally:
        for blk, impl in saved:
            blk._compiled_call_impl = impl


def run_diffusers(args, models: str, out: str, prompt: str, negative: str) -> dict:
    from diffusers import UniPCMultistepScheduler, WanPipeline
    from vibeboard.common import runtime
    from vibeboard.media.nodes import VBSaveVideo
    handle = load_handle(models)
    runtime.set_host_dirs(output=out)
    t = {}
    with handle.use("transformer") as dit, handle.use("vae") as vae, handle.use("text_encoder") as te, \
            eager_blocks(dit):
        sched = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                        num_train_timesteps=1000, flow_shift=args.shift)
        pipe = WanPipeline(tokenizer=handle.tokenizer, text_encoder=te, transformer=dit, vae=vae, scheduler=sched)
        pipe.set_progress_bar_config(disable=True)
        sync()
        t0 = time.perf_counter()
        with torch.no_grad():
            pos, neg = pipe.encode_prompt(prompt, negative, do_classifier_free_guidance=args.cfg > 1,
                                          device=handle.device, dtype=handle.dtype)
        sync()
        t1 = time.perf_counter()
        gen = torch.Generator("cpu").manual_seed(42)
        latents = pipe(prompt_embeds=pos, negative_prompt_embeds=neg, height=args.height, width=args.width,
                       num_frames=args.frames, num_inference_steps=args.steps, guidance_scale=args.cfg,
                       generator=gen, output_type="latent").frames
        sync()
        t2 = time.perf_counter()
        with torch.no_grad():   # WanPipeline's own decode tail
            lat = latents.to(vae.dtype)
            mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1).to(lat)
            std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1).to(lat)
            video = vae.decode(lat * std + mean, return_dict=False)[0]
            frames = pipe.video_processor.postprocess_video(video, output_type="pt")[0]  # [T,C,H,W] 0..1
        sync()
        t3 = time.perf_counter()
        VBSaveVideo().save(frames.permute(0, 2, 3, 1).float().cpu(), fps=16.0, filename_prefix="bench/diffusers",
                           crf=19, preset="medium")
        t4 = time.perf_counter()
    t["_frames"] = frames.permute(0, 2, 3, 1).float().cpu()
    t.update({"text encode": t1 - t0, "sampling": t2 - t1, "per step": (t2 - t1) / args.steps,
              "decode": t3 - t2, "MP4": t4 - t3, "decode + MP4": t4 - t2, "text → MP4": t4 - t0})
    return t


def x264_threads(frames: torch.Tensor, out: str) -> dict:
    """MP4 write time of the same frames with x264 slice threads (PyAV's default) vs frame threads (ours):
    the random-weight decode (noise-like, the hardest case) and a smooth moving gradient (closer to real video)."""
    from vibeboard.media import video
    t_idx = torch.arange(frames.shape[0]).view(-1, 1, 1, 1)
    x = torch.linspace(0, 1, frames.shape[2]).view(1, 1, -1, 1)
    smooth = ((x + t_idx / frames.shape[0] + torch.tensor([0.0, 0.3, 0.6])) % 1.0).expand_as(frames).contiguous()
    res, saved = {}, video.X264_THREAD_TYPE
    try:
        for name, clip in (("decoded", frames), ("smooth", smooth)):
            for kind in ("SLICE", "FRAME"):
                video.X264_THREAD_TYPE = kind
                t0 = time.perf_counter()
                video.write_video(os.path.join(out, f"x264_{name}_{kind}.mp4"), clip, 16.0, crf=19, preset="medium")
                res[f"MP4 {name}, {kind.lower()} threads"] = time.perf_counter() - t0
    finally:
        video.X264_THREAD_TYPE = saved
    return res


def fmt(v):
    return "—" if v is None else f"{v:.3f}" if v < 10 else f"{v:.1f}"


def table(cols: dict) -> str:
    names = [n for n in cols if n not in ("x264", "lossy", "lossless")]
    lines = ["| stage | " + " | ".join(names) + " | ours/diffusers (warm) |", "|---|" + "---|" * (len(names) + 1)]
    for s in STAGES:
        vals = [cols[n].get(s) for n in names]
        d, w = cols.get("diffusers", {}).get(s), cols.get("ours (warm)", {}).get(s)
        ratio = f"{w / d:.2f}×" if d and w is not None else "—"
        lines.append(f"| {s} (s) | " + " | ".join(fmt(v) for v in vals) + f" | {ratio} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny models on CPU (checks the bench runs)")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--cfg", type=float, default=5.0)
    ap.add_argument("--shift", type=float, default=3.0)
    ap.add_argument("--frames", type=int, default=81)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=832)
    ap.add_argument("--compile", action="store_true",
                    help="ours with the sampler's compiled blocks (first run pays the warm-up; a second process "
                         "on the same machine reuses torch's on-disk compile cache)")
    ap.add_argument("--warm-runs", type=int, default=1, help="extra runs of ours with models loaded")
    ap.add_argument("--no-diffusers", dest="diffusers", action="store_false")
    ap.add_argument("--precision", choices=("bf16", "fp8"), default="bf16",
                    help="ours (the CLI runs) with fp8 GEMMs (lossy, opt-in)")
    ap.add_argument("--attention", default="auto",
                    help="ours (the CLI runs) with this Wan Sampler Settings attention (auto, fp8, int8, triton…)")
    ap.add_argument("--step-cache", type=float, default=0.0, metavar="THRESH",
                    help="ours (the CLI runs) with the step cache at this threshold (lossy; 0 = off); also the "
                         "threshold of --lossy's step-cache rows (default there 0.1)")
    ap.add_argument("--no-check", dest="check", action="store_false",
                    help="skip the lossless check (one forward: ours vs the default path vs fp32; clip_lossless.py)")
    ap.add_argument("--lossy", action="store_true",
                    help="after the runs: one-forward microbench bf16 vs fp8 GEMMs and --lossy-steps samplings in "
                         "each lossy mode, with relative errors against bf16 and skip ratios (bench/clip_lossy.py)")
    ap.add_argument("--lossy-steps", type=int, default=20, help="steps of each --lossy sampling")
    ap.add_argument("--workdir", help="scratch folder (default: a temp dir)")
    ap.add_argument("--json", help="write the numbers here")
    args = ap.parse_args(argv)
    if args.quick:
        args.steps, args.frames, args.height, args.width = min(args.steps, 2), 5, 32, 32
        args.lossy_steps = min(args.lossy_steps, 4)
    device = "cuda" if torch.cuda.is_available() and not args.quick else "cpu"
    work = args.workdir or tempfile.mkdtemp(prefix="clip_e2e_")
    models, out = os.path.join(work, "models"), os.path.join(work, "output")
    t0 = time.perf_counter()
    write_models(models, args.quick, device)
    print(f"wrote models in {time.perf_counter() - t0:.1f} s ({work})", flush=True)
    with open(WORKFLOW) as f:
        wf = json.load(f)
    prompt, negative = wf["2"]["inputs"]["prompt"], wf["2"]["inputs"]["negative_prompt"]

    cols, sampler_stats = {}, {}
    cols["ours (first)"] = run_ours(args, models, out)
    sampler_stats["ours (first)"] = cols["ours (first)"].pop("_sampler")
    print("ours (first run):", {k: round(v, 3) for k, v in cols["ours (first)"].items()}, flush=True)
    for i in range(args.warm_runs):
        cols["ours (warm)"] = run_ours(args, models, out)
        sampler_stats["ours (warm)"] = cols["ours (warm)"].pop("_sampler")
        print("ours (warm run):", {k: round(v, 3) for k, v in cols["ours (warm)"].items()}, flush=True)
    if args.diffusers:
        cols["diffusers"] = run_diffusers(args, models, out, prompt, negative)
        frames = cols["diffusers"].pop("_frames")
        print("diffusers:", {k: round(v, 3) for k, v in cols["diffusers"].items()}, flush=True)
        extra = x264_threads(frames, out)
        print("x264 threads:", {k: round(v, 3) for k, v in extra.items()}, flush=True)
        cols["x264"] = extra
    if args.check:
        import clip_lossless
        cols["lossless"] = clip_lossless.check(args, load_handle(models), prompt, eager_blocks)
    if args.lossy:
        import clip_lossy
        cols["lossy"] = clip_lossy.run(args, load_handle(models), prompt, negative)
    card = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    lossy = "".join([", ours fp8 GEMMs" if args.precision == "fp8" else "",
                     f", ours attention {args.attention}" if args.attention != "auto" else "",
                     f", ours step cache {args.step_cache}" if args.step_cache > 0 else ""])
    print(f"\n{card}, torch {torch.__version__}, {args.width}x{args.height}x{args.frames}, {args.steps} steps, "
          f"CFG {args.cfg}{', ours compiled' if args.compile else ''}{lossy}\n")
    print(table(cols))
    for k, v in cols.get("x264", {}).items():
        print(f"| {k} (s) | {v:.2f} |")
    for name, st in sampler_stats.items():
        if st.get("precision") == "fp8" or "skip_ratio" in st:
            print(f"{name}: {st['forwards']} DiT forwards for {st['steps']} steps, precision {st['precision']}, "
                  f"skip ratio {st.get('skip_ratio', 0.0):.2f}")
    if "lossless" in cols:
        import clip_lossless
        print("\nLossless check (ours vs the default path, one forward):\n")
        print(clip_lossless.table(cols["lossless"]))
    if "lossy" in cols:
        print(f"\nLossy modes ({args.lossy_steps} steps for the samplings):\n")
        print(clip_lossy.tables(cols["lossy"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"card": card, "args": vars(args), "results": cols}, f, indent=1)
    return cols


if __name__ == "__main__":
    main()
