"""Wan flow-matching sampler: our own loop around diffusers' schedulers and Wan DiTs.

Why our own loop: ComfyUI-native latents in/out, cond+uncond batched in one forward (one pass over the
weights instead of two), progress + interrupt every step, A14B expert switching, VACE/I2V inputs, and the
VRAM manager deciding where weights live. `predict()` is the single DiT call everything goes through, so
add-ons (StoryMem, InfCam, ReCo) can wrap it.
"""
from __future__ import annotations

from contextlib import ExitStack, nullcontext
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..common import runtime
from ..models import lora as lora_mod
from .conditioning import WanConditioning, denormalize, normalize
from .handle import WanHandle

SCHEDULERS = ("unipc", "euler", "dpm++")


@dataclass
class SamplerSettings:
    steps: int = 30
    cfg: float = 5.0
    shift: float = 5.0
    scheduler: str = "unipc"
    seed: int = 0
    denoise: float = 1.0
    cfg_2: Optional[float] = None       # A14B low-noise expert's CFG (defaults to cfg)
    batch_cfg: bool = True              # cond + uncond in one forward
    attention: str = "auto"             # auto | sdpa | cudnn | flash | efficient | math


def make_scheduler(name: str, shift: float):
    from diffusers import DPMSolverMultistepScheduler, FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler
    if name == "unipc":
        return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                       num_train_timesteps=1000, flow_shift=shift)
    if name == "dpm++":
        return DPMSolverMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                           num_train_timesteps=1000, flow_shift=shift, algorithm_type="dpmsolver++")
    if name == "euler":
        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
    raise ValueError(f"unknown scheduler {name!r}; choose one of {SCHEDULERS}")


def attention_context(kind: str, device: torch.device):
    """SDPA backend choice. On H100 the cuDNN backend is ~1.7× FlashAttention-2 for Wan's shapes."""
    if device.type != "cuda" or kind in ("sdpa", None):
        return nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel
    order = {"auto": [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                      SDPBackend.MATH],
             "cudnn": [SDPBackend.CUDNN_ATTENTION], "flash": [SDPBackend.FLASH_ATTENTION],
             "efficient": [SDPBackend.EFFICIENT_ATTENTION], "math": [SDPBackend.MATH]}[kind]
    try:
        return sdpa_kernel(order, set_priority=True)
    except TypeError:  # older torch: no priority order
        return sdpa_kernel(order)


def predict(model, latents: torch.Tensor, t: torch.Tensor, embeds: torch.Tensor, cond: WanConditioning,
            dtype: torch.dtype) -> torch.Tensor:
    """One DiT call on normalised latents [B,16,T,h,w]; returns the flow (velocity) prediction in fp32."""
    b = latents.shape[0]
    x = latents
    timestep = t.reshape(-1)[:1].expand(b).to(x.device)
    if cond.clean_latents is not None:
        # Clean leading frames with per-token timestep 0 (diffusers' expand_timesteps, generalised to k frames).
        k = cond.clean_latents.shape[2]
        x = torch.cat([cond.clean_latents.to(x).expand(b, -1, -1, -1, -1), x[:, :, k:]], dim=2)
        pt, ph, pw = model.config.patch_size
        per_frame = (x.shape[3] // ph) * (x.shape[4] // pw)
        timestep = torch.full((b, (x.shape[2] // pt) * per_frame), float(t.reshape(-1)[0]), device=x.device)
        timestep[:, :(k // pt) * per_frame] = 0
    if cond.concat_latents is not None:
        x = torch.cat([x, cond.concat_latents.to(x).expand(b, -1, -1, -1, -1)], dim=1)
    kwargs = {}
    if cond.image_embeds is not None and getattr(model.config, "image_dim", None):
        kwargs["encoder_hidden_states_image"] = cond.image_embeds.to(x.device, dtype).expand(b, -1, -1)
    if cond.vace_context is not None:
        kwargs["control_hidden_states"] = cond.vace_context.to(x.device, dtype).expand(b, -1, -1, -1, -1)
        n = len(model.config.vace_layers)
        kwargs["control_hidden_states_scale"] = torch.full((n,), float(cond.vace_scale), device=x.device)
    out = model(hidden_states=x.to(dtype), timestep=timestep,
                encoder_hidden_states=embeds.to(x.device, dtype), return_dict=False, **kwargs)[0]
    return out.float()


def guided(model, latents, t, cond: WanConditioning, cfg: float, dtype, batch_cfg: bool = True):
    """Classifier-free guidance; cond and uncond share one forward when batch_cfg (lossless reordering)."""
    if cond.negative_embeds is None or cfg == 1.0:
        return predict(model, latents, t, cond.prompt_embeds, cond, dtype)
    if batch_cfg:
        both = predict(model, torch.cat([latents, latents]), t,
                       torch.cat([cond.prompt_embeds, cond.negative_embeds]), cond, dtype)
        pos, neg = both.chunk(2)
    else:
        pos = predict(model, latents, t, cond.prompt_embeds, cond, dtype)
        neg = predict(model, latents, t, cond.negative_embeds, cond, dtype)
    return neg + cfg * (pos - neg)


def loras_for(handle: WanHandle, part: str) -> list:
    """handle.loras entries: (path or parsed groups, strength[, part]); no part = every expert."""
    out = []
    for entry in handle.loras:
        source, strength = entry[0], entry[1]
        if len(entry) < 3 or entry[2] in (None, part):
            out.append((source, strength))
    return out


def preview_image(latents: torch.Tensor):
    """A rough look at the middle frame: three latent channels stretched to 0..255 (not a VAE decode)."""
    try:
        from PIL import Image
    except Exception:
        return None
    frame = latents[0, :3, latents.shape[2] // 2].float().cpu()
    lo, hi = frame.amin(dim=(1, 2), keepdim=True), frame.amax(dim=(1, 2), keepdim=True)
    img = ((frame - lo) / (hi - lo + 1e-6) * 255).byte().permute(1, 2, 0).numpy()
    return ("JPEG", Image.fromarray(img), 512)


def sample(handle: WanHandle, cond: WanConditioning, settings: SamplerSettings, shape: tuple,
           init_latents: Optional[torch.Tensor] = None, callback: Optional[Callable] = None,
           predict_fn: Optional[Callable] = None, preview: bool = False) -> torch.Tensor:
    """Generate raw VAE latents of `shape` [B,16,T,h,w] (T excludes VACE reference frames).

    init_latents (raw) + denoise < 1 → video-to-video: start from the noised input at that strength.
    callback(step, total, x0_preview_normalised) is called after each step; runtime progress/interrupt too.
    """
    device = handle.device
    steps = max(1, int(settings.steps))
    sched = make_scheduler(settings.scheduler, settings.shift)
    sched.set_timesteps(steps, device=device)
    timesteps = sched.timesteps
    start = 0
    if init_latents is not None and settings.denoise < 1.0:
        start = min(steps - 1, steps - max(1, int(round(steps * settings.denoise))))
    b, c, t, h, w = shape
    full_t = t + cond.num_ref_frames
    gen = torch.Generator("cpu").manual_seed(int(settings.seed))
    noise = torch.randn((b, c, full_t, h, w), generator=gen, dtype=torch.float32)
    latents = noise.to(device)
    if init_latents is not None:
        x0 = normalize(handle, init_latents).to(device)
        if cond.num_ref_frames:
            x0 = torch.cat([noise[:, :, :cond.num_ref_frames].to(device), x0], dim=2)
        if start > 0:
            sigma = float(sched.sigmas[start])
            latents = (1 - sigma) * x0 + sigma * latents
            if hasattr(sched, "set_begin_index"):
                sched.set_begin_index(start)
    run = timesteps[start:]
    bar = runtime.progress_bar(len(run))
    boundary = None
    if handle.boundary_ratio is not None and handle.has("transformer_2"):
        boundary = handle.boundary_ratio * 1000
    call = predict_fn or guided
    part = None
    ctx = None
    try:
        for i, ts in enumerate(run):
            runtime.check_interrupt()
            want = "transformer_2" if boundary is not None and float(ts) < boundary else "transformer"
            if want != part:
                if ctx is not None:
                    ctx.close()
                ctx = ExitStack()
                model = ctx.enter_context(handle.use(want))
                # LoRAs are merged while this expert runs and removed after (the cached model stays clean).
                ctx.enter_context(lora_mod.applied(model, loras_for(handle, want)))
                part = want
            cfg = settings.cfg_2 if (part == "transformer_2" and settings.cfg_2 is not None) else settings.cfg
            with torch.no_grad(), attention_context(settings.attention, device):
                flow = call(model, latents, ts.reshape(1), cond, cfg, handle.dtype, settings.batch_cfg)
            latents = sched.step(flow, ts, latents, return_dict=False)[0]
            if callback is not None:
                callback(i + 1, len(run), latents)
            bar.update_absolute(i + 1, len(run), preview_image(latents) if preview else None)
    finally:
        if ctx is not None:
            ctx.close()
    if cond.clean_latents is not None:
        k = cond.clean_latents.shape[2]
        latents = torch.cat([cond.clean_latents.to(latents).expand(latents.shape[0], -1, -1, -1, -1),
                             latents[:, :, k:]], dim=2)
    latents = latents[:, :, cond.num_ref_frames:]
    return denormalize(handle, latents).cpu()
