"""Is our lossless real path within bf16 tolerance of the default path? One DiT forward, three ways (issue 12 item 3).

Called by `clip_e2e.py` after its runs (same process, same loaded modules), at the clip's latent shape, timestep
500, the workflow's prompt:
- **fp32**: a float32 copy of the DiT, eager, PyTorch's default attention — the reference;
- **default**: the bf16 DiT as diffusers runs it (eager blocks, SDPA, FFN Linear then GELU);
- **ours**: the bf16 DiT as our sampler runs it on the lossless path — compiled blocks when `--compile` compiled
  them, the fused FFN GEMM (`wan/ffn_fused.py`), the attention of `--attention` when it is lossless (auto/triton).
Prints ‖x − fp32‖/‖fp32‖ for default and ours (the first is what bf16 itself costs: ours should be no further),
and ours vs default.
"""
from __future__ import annotations

import copy

import torch

from bench_common import md_table
from bench_common import rel_err as _rel


def check(args, handle, prompt: str, eager_blocks) -> dict:
    from contextlib import ExitStack

    from vibeboard.wan import conditioning as C
    from vibeboard.wan import sampler as S
    embeds = C.encode_text(handle, [prompt]).to(handle.device)
    lat_t = (args.frames - 1) // handle.scale_temporal + 1
    shape = (1, handle.latent_channels, lat_t, args.height // handle.scale_spatial,
             args.width // handle.scale_spatial)
    g = torch.Generator("cpu").manual_seed(0)
    x = torch.randn(shape, generator=g).to(handle.device)
    t = torch.tensor([500.0], device=handle.device)
    attention = args.attention if args.attention in ("auto", "triton") else "auto"

    def forward(model, dtype):   # inference mode, as nodes run (compiled blocks were traced in it: no retrace)
        with torch.inference_mode():
            return model(hidden_states=x.to(dtype), timestep=t, encoder_hidden_states=embeds.to(dtype),
                         return_dict=False)[0].float()

    res, stats = {}, {}
    with handle.use("transformer") as dit:
        with eager_blocks(dit):
            ref_model = copy.deepcopy(dit).float()
            res["_fp32"] = forward(ref_model, torch.float32)
            del ref_model
            if handle.device.type == "cuda":
                torch.cuda.empty_cache()
            default = forward(dit, handle.dtype)
    # ours: the expert exactly as the sampler prepares it (compiled blocks, fused FFN, attention of the settings)
    settings = S.SamplerSettings(compile=bool(args.compile), attention=attention)
    with ExitStack() as stack:
        model, _ = S._open_expert(handle, "transformer", settings, C.WanConditioning(prompt_embeds=embeds), stack,
                                  stats)
        ours = forward(model, handle.dtype)
    fused = stats.get("fused_ffn", 0)
    ref = res.pop("_fp32")
    res.update({"default vs fp32": _rel(default, ref), "ours vs fp32": _rel(ours, ref),
                "ours vs default": _rel(ours, default), "fused FFN blocks": fused,
                "ours compiled": bool(args.compile), "ours attention": attention})
    print("lossless check:", {k: (f"{v:.2e}" if isinstance(v, float) else v) for k, v in res.items()}, flush=True)
    return res


def table(res: dict) -> str:
    return md_table(["one DiT forward, rel. L2 error", "value"],
                    [[k, f"{v:.2e}" if isinstance(v, float) else v] for k, v in res.items()])
