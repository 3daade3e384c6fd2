"""InfCam V2V vs plain Wan2.1-T2V-1.3B: time per denoising step at full size with random weights.

    python bench/infcam_gpu.py            # CUDA, 480×832×81 frames, bf16
    python bench/infcam_gpu.py --quick    # tiny config on CPU (checks the script)

InfCam runs the target and the source latents as one batch of two through every block, plus a per-frame
"triplet" attention and a homography warp per block, so one InfCam forward ≈ two plain forwards + extras.
A step is a CFG step (conditional + unconditional forward). Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch

sys.path[:0] = [os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "custom_nodes"),
                os.path.dirname(os.path.abspath(__file__))]

from bench_common import card_line, peak_gib, peak_reset, timed  # noqa: E402

WAN_1_3B = dict(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16,
                out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
                qk_norm="rms_norm_across_heads", eps=1e-6)
TINY = dict(WAN_1_3B, num_attention_heads=2, attention_head_dim=32, text_dim=64, ffn_dim=128, num_layers=2,
            freq_dim=32)


def min_mean(fn, iters, device):
    """(fastest, mean) of `iters` timed calls after one warm-up (kernels, allocator)."""
    stats = {}
    timed(fn, iters, device=device, stats=stats)
    return min(stats["times"]), sum(stats["times"]) / iters


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="tiny model on CPU")
    ap.add_argument("--frames", type=int, default=81)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=832)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--sdpa", choices=["default", "cudnn", "flash", "efficient", "math"], default="default",
                    help="force one PyTorch SDPA backend for every attention (diffusers' native path uses SDPA too)")
    args = ap.parse_args()

    from diffusers import WanTransformer3DModel

    from vibeboard.camera import preset_path
    from vibeboard.vfx.infcam import InfCamWan, cast_model
    from vibeboard.vfx.infcam_conditioning import camera_inputs

    if args.quick:
        device, dtype, cfg = "cpu", torch.float32, TINY
        frames, height, width, iters = 9, 64, 96, 1
    else:
        if not torch.cuda.is_available():
            sys.exit("no CUDA device: run with --quick for the CPU check")
        device, dtype, cfg = "cuda", torch.bfloat16, WAN_1_3B
        frames, height, width, iters = args.frames, args.height, args.width, args.iters
    torch.manual_seed(0)
    with torch.device(device):
        base = WanTransformer3DModel(**cfg)
    model = cast_model(InfCamWan(base), dtype).to(device).eval()
    with torch.no_grad():
        for p in model.infcam.parameters():  # the zero-inits would let kernels skip nothing, but be fair
            p.normal_(0, 0.02)
    f_lat, h_lat, w_lat = (frames - 1) // 4 + 1, height // 8, width // 8
    lat = torch.randn(1, 16, f_lat, h_lat, w_lat, device=device, dtype=dtype)
    src = torch.randn_like(lat)
    text = torch.randn(1, 512, cfg["text_dim"], device=device, dtype=dtype)
    t = torch.tensor([500.0], device=device)
    ext, k_src, k_trg = camera_inputs(preset_path("orbit_right", frames, width, height), frames, width, height)
    cam = dict(cam_extrinsic=ext.to(device), intrinsic_src=k_src.to(device), intrinsic_trg=k_trg.to(device))

    lat2, text2, t2 = torch.cat([lat, src]), text.repeat(2, 1, 1), t.repeat(2)

    @torch.no_grad()
    def wan_step():
        base(lat, t, text, return_dict=False)
        base(lat, t, text, return_dict=False)

    @torch.no_grad()
    def wan_batch2_forward():  # the tokens InfCam pushes through the Wan blocks, without InfCam's additions
        base(lat2, t2, text2, return_dict=False)

    @torch.no_grad()
    def infcam_step():
        model(lat, src, t, text, **cam)
        model(lat, src, t, text, **cam)

    import contextlib
    from torch.nn.attention import SDPBackend, sdpa_kernel
    backends = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
                "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}
    ctx = sdpa_kernel(backends[args.sdpa]) if args.sdpa != "default" else contextlib.nullcontext()
    with ctx:
        peak_reset(device)
        wan_min, wan_mean = min_mean(wan_step, iters, device)
        wan_peak = peak_gib(device) if device == "cuda" else None
        b2_min, _ = min_mean(wan_batch2_forward, iters, device)
        peak_reset(device)
        inf_min, inf_mean = min_mean(infcam_step, iters, device)
        inf_peak = peak_gib(device) if device == "cuda" else None
    tokens = f_lat * (h_lat // 2) * (w_lat // 2)
    print(json.dumps({
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "card_line": card_line(device),
        "dtype": str(dtype),
        "frames": frames, "height": height, "width": width, "tokens_per_video": tokens,
        "params_wan": sum(p.numel() for p in base.parameters()),
        "params_infcam_extra": sum(p.numel() for p in model.infcam.parameters()),
        "wan_cfg_step_s": round(wan_min, 4), "wan_cfg_step_mean_s": round(wan_mean, 4),
        "infcam_cfg_step_s": round(inf_min, 4), "infcam_cfg_step_mean_s": round(inf_mean, 4),
        "infcam_over_wan": round(inf_min / wan_min, 3),
        "wan_batch2_forward_s": round(b2_min, 4),
        "infcam_additions_share": round(1 - 2 * b2_min / inf_min, 3),
        "peak_gib_wan": wan_peak and round(wan_peak, 2), "peak_gib_infcam": inf_peak and round(inf_peak, 2),
        "sdpa_backend": args.sdpa,
    }))


if __name__ == "__main__":
    main()
