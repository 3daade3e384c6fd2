"""The one Wan sampler: every Wan-based node (T2V/I2V/V2V/VACE, StoryMem, Block Scene, ReCo, keyframe montage,
InfCam) samples through `sample()` here.

Why our own loop: ComfyUI-native latents in/out, cond+uncond batched in one forward (one pass over the weights
instead of two), progress + interrupt every step, A14B expert switching, and the VRAM manager deciding where
weights live. Research models plug in without copying any of it:
- conditioning builders fill `WanConditioning` (held latent regions, RoPE positions, per-token timesteps, extra
  channels, VACE context, attention processors);
- model adapters sit on the handle (`WanHandle.adapter`): one with `predict` (InfCam) replaces the DiT call for
  that handle only, one with `call_inputs` (InfiniteTalk's audio attention) hooks onto the DiT per call; an
  adapter that patched a DiT copy in place (FlashPortrait) reads its per-call inputs from the conditioning
  through `model.vb_call_inputs(cond)`;
- long clips: a window schedule on the conditioning (`windows.ContextWindows`) samples window by window with
  per-window conditioning and blends the overlaps; multi-term guidance (`conditioning.Guidance`) combines
  several passes (FlashPortrait's text + expression CFG, InfiniteTalk's text + audio CFG), batched in one forward
  under batch_cfg when every per-call input hook reads per-row pass inputs.
The sampler owns scheduler, shift, CFG (and the A14B low-noise CFG), seed, attention backend, batch CFG,
compile, LoRAs and placement; nothing else re-implements them.

Wan convention: x_sigma = (1 - sigma) x0 + sigma noise, the model predicts v = noise - x0, timestep = 1000 sigma.
"""
from __future__ import annotations

import dataclasses
import os
from contextlib import ExitStack, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..common import runtime
from ..models import lora as lora_mod
from . import rope as rope_mod
from . import windows as windows_mod
from .conditioning import (PASS_ROWS, Guidance, GuidancePass, HeldRegion, WanConditioning, denormalize,
                           normalize)
from .handle import WanHandle
from .step_cache import StepCache

SCHEDULERS = ("unipc", "euler", "dpm++", "flow_euler")
PRECISIONS = ("bf16", "fp8")
# lightx2v's recommended settings for its Wan2.1 4-step distilled LoRAs (configs/distill/wan21/*_lora_4step_cfg.json:
# denoising_step_list [1000, 750, 500, 250], sample_shift 5, enable_cfg false; its step is plain Euler on those
# sigmas, which is our flow_euler at 4 steps). CFG 1 runs one forward per step (no unconditional pass).
LIGHTX2V_4STEP = dict(steps=4, cfg=1.0, shift=5.0, scheduler="flow_euler")
LAST_STATS: dict = {}   # the last sample()'s stats (the CLI / benchmarks read it)
# [DiT calls, batch rows] of the running sample(): counted where the calls happen (`predict`), so the stats cannot
# drift from what windows, guidance batching and CFG really did.
_TALLY: ContextVar = ContextVar("vibeboard_wan_forward_tally", default=None)


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
    attention: str = "auto"             # auto | sdpa | cudnn | flash | efficient | math | triton | fp8 | int8
    compile: bool = False               # torch.compile the DiT blocks (CUDA, fully resident models only)
    precision: str = "bf16"             # bf16 | fp8: fp8 GEMMs in the blocks (lossy, opt-in; wan/fp8_gemm.py)
    step_cache: float = 0.0             # > 0: skip forwards below this estimated change (lossy; wan/step_cache.py)

    def replace(self, **changes) -> "SamplerSettings":
        return SamplerSettings(**{**self.__dict__, **changes})


class FlowEuler:
    """Euler on Wan's shifted sigmas linspace(1, 0, steps+1) (DiffSynth's FlowMatchScheduler with sigma_min 0 and
    extra_one_step, which InfCam and Wan's own training code use). diffusers' FlowMatchEuler starts at 1 but ends
    its linspace at 1/1000 before shifting, so the two give different schedules."""

    def __init__(self, shift: float):
        self.shift = float(shift)
        self._index = 0
        self.begin_index = 0

    def set_timesteps(self, steps: int, device=None):
        s = torch.linspace(1.0, 0.0, steps + 1)[:-1]
        s = self.shift * s / (1 + (self.shift - 1) * s)
        self.sigmas = torch.cat([s, torch.zeros(1)])
        self.timesteps = torch.tensor([float(x) * 1000.0 for x in s], dtype=torch.float32, device=device)
        self._index = self.begin_index = 0

    def set_begin_index(self, index: int):
        self._index = self.begin_index = int(index)

    def step(self, model_output, timestep, sample, return_dict=False):
        i = self._index
        out = (sample.float() + (self.sigmas[i + 1] - self.sigmas[i]) * model_output.float()).to(sample.dtype)
        self._index += 1
        return (out,)


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
    if name == "flow_euler":
        return FlowEuler(shift)
    raise ValueError(f"unknown scheduler {name!r}; choose one of {SCHEDULERS}")


ATTENTION_CHOICES = ("auto", "sdpa", "cudnn", "flash", "efficient", "math", "triton", "fp8", "int8")
# Our own kernels (wan/attention): self-attention of the Wan blocks; everything else keeps SDPA ("auto" order).
KERNEL_ATTENTION = ("triton", "fp8", "int8")
# The kernel "auto" uses for self-attention: None = cuDNN SDPA. Set to "triton" once the GPU benchmark
# (bench/attention_kernels.py) shows it faster than cuDNN at Wan's shapes.
AUTO_KERNEL = None


def self_attention_kernel(kind: str, device: torch.device):
    """The wan/attention kernel that self-attention runs for this setting, or None (SDPA)."""
    if kind in KERNEL_ATTENTION:
        return kind
    if kind == "auto" and AUTO_KERNEL and torch.device(device).type == "cuda":
        from .attention.processor import unavailable_reason
        return AUTO_KERNEL if unavailable_reason(AUTO_KERNEL, device) is None else None
    return None


def attention_context(kind: str, device: torch.device):
    """SDPA backend choice. On H100 the cuDNN backend is ~1.7× FlashAttention-2 for Wan's shapes.
    With one of our kernels, the attention it does not cover (cross-attention, masks) uses the "auto" order."""
    if kind in KERNEL_ATTENTION:
        kind = "auto"
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


def compile_supported(handle: WanHandle, entry) -> bool:
    """torch.compile pays off on CUDA with the DiT fully resident (block swap moves weights under it)."""
    return handle.device.type == "cuda" and entry is not None and entry.runner is None


def compile_blocks(model, mode: Optional[str] = None, persist: bool = True) -> bool:
    """Compile each transformer block once (same code for every block: one compilation serves all).
    Fuses the norms, RoPE and modulation elementwise work: ≈ −19 % per CFG step on an H100 (bench/README.md).
    `persist`: the compile artefacts are kept in the models folder's state/ (wan/compile_cache.py), so a new
    process on this machine skips inductor/Triton and only traces."""
    if getattr(model, "_vb_compiled", False):
        return True
    for name in ("blocks", "vace_blocks"):
        for blk in getattr(model, name, []):
            blk.compile(fullgraph=False, dynamic=False, mode=mode)
    if persist:
        from . import compile_cache
        compile_cache.attach(model, mode)
    model._vb_compiled = True
    return True


def _timestep(model, x: torch.Tensor, t: torch.Tensor, cond: WanConditioning) -> torch.Tensor:
    """[B] one timestep, or [B, tokens] with 0 on clean tokens (Wan2.2 TI2V's expand_timesteps, generalised)."""
    b = x.shape[0]
    if cond.clean_token_mask is None:
        return t.reshape(-1)[:1].expand(b).to(x.device)
    p_t, p_h, p_w = model.config.patch_size
    m = cond.clean_token_mask.to(x.device).float()
    m = m[:, ::p_t, ::p_h, ::p_w].flatten(1)
    return ((1.0 - m) * float(t.reshape(-1)[0])).expand(b, -1)


def predict(model, latents: torch.Tensor, t: torch.Tensor, embeds: torch.Tensor, cond: WanConditioning,
            dtype: torch.dtype, adapter=None) -> torch.Tensor:
    """One DiT call on normalised latents [B,16,T,h,w]; returns the flow (velocity) prediction in fp32."""
    b = latents.shape[0]
    tally = _TALLY.get()
    if tally is not None:
        tally[0] += 1
        tally[1] += b
    x = latents
    timestep = _timestep(model, x, t, cond)
    if adapter is not None and hasattr(adapter, "predict"):  # a model adapter (InfCam) owns the DiT forward
        return adapter.predict(model, x.to(dtype), timestep, embeds.to(x.device, dtype), cond).float()
    if cond.concat_latents is not None:
        x = torch.cat([x, cond.concat_latents.to(x).expand(b, -1, -1, -1, -1)], dim=1)
    kwargs = {}
    if cond.image_embeds is not None and getattr(model.config, "image_dim", None):
        kwargs["encoder_hidden_states_image"] = cond.image_embeds.to(x.device, dtype).expand(b, -1, -1)
    if cond.vace_context is not None:
        kwargs["control_hidden_states"] = cond.vace_context.to(x.device, dtype).expand(b, -1, -1, -1, -1)
        n = len(model.config.vace_layers)
        kwargs["control_hidden_states_scale"] = torch.full((n,), float(cond.vace_scale), device=x.device)
    with _call_inputs(model, cond, adapter):
        out = model(hidden_states=x.to(dtype), timestep=timestep,
                    encoder_hidden_states=embeds.to(x.device, dtype), return_dict=False, **kwargs)[0]
    return out.float()


def _call_inputs(model, cond: WanConditioning, adapter=None):
    """Model adapters take this call's inputs (window, guidance pass or passes) from the conditioning: one
    installed in a DiT copy (FlashPortrait's expression attention) through `model.vb_call_inputs(cond)`, one kept
    beside the DiT as a handle part (InfiniteTalk's audio attention) through `adapter.call_inputs(model, cond)`;
    both are entered around the call."""
    stack = ExitStack()
    hook = getattr(model, "vb_call_inputs", None)
    if hook is not None:
        stack.enter_context(hook(cond))
    if adapter is not None and hasattr(adapter, "call_inputs"):
        stack.enter_context(adapter.call_inputs(model, cond))
    return stack


def cfg_mode(cond: WanConditioning, cfg: float, batch_cfg: bool, latents: torch.Tensor) -> str:
    """"single" (CFG 1 or no negative prompt: one forward, no unconditional pass), "batched" (cond + uncond in one
    forward when their prompts have the same shape; a regional prompt is longer) or "separate" (two forwards)."""
    if cond.negative_embeds is None or cfg == 1.0:
        return "single"
    if batch_cfg and cond.prompt_embeds.shape == cond.negative_embeds.shape and latents.shape[0] == 1:
        return "batched"
    return "separate"


def guided(model, latents, t, cond: WanConditioning, cfg: float, dtype, batch_cfg: bool = True, adapter=None):
    """Classifier-free guidance: the two-pass case of `guided_passes` (see `cfg_mode` for how many forwards it
    takes)."""
    if cfg_mode(cond, cfg, batch_cfg, latents) == "single":
        return predict(model, latents, t, cond.prompt_embeds, cond, dtype, adapter)
    plain = Guidance({"cond": GuidancePass(cond.prompt_embeds), "uncond": GuidancePass(cond.negative_embeds)},
                     "uncond", [(cfg, "cond", "uncond")])
    return guided_passes(model, latents, t, cond, dtype, adapter, batch_cfg, plain)


def _pass_rows_supported(model, adapter) -> bool:
    """Passes that differ in their `extra` can share a forward only when every consumer of per-call inputs reads
    one set of inputs per batch row (`vb_pass_rows = True` on the patched DiT / the adapter); an adapter that owns
    the forward (InfCam) reads `cond.extra` itself and must declare it too."""
    consumers = []
    if getattr(model, "vb_call_inputs", None) is not None:
        consumers.append(model)
    if adapter is not None:
        consumers.append(adapter)
    return all(getattr(c, "vb_pass_rows", False) for c in consumers)


def passes_batched(guidance: Guidance, batch: bool, latents: torch.Tensor, model=None, adapter=None) -> bool:
    """Whether `guided_passes` runs all passes in one forward: batch_cfg, more than one pass, one clip, prompts of
    one shape, and passes that either change nothing in `extra` or whose every per-call input hook reads per-row
    inputs."""
    passes = list(guidance.passes.values())
    return (batch and len(passes) > 1 and latents.shape[0] == 1
            and all(p.embeds.shape == passes[0].embeds.shape for p in passes)
            and (all(not p.extra for p in passes) or _pass_rows_supported(model, adapter)))


def guided_passes(model, latents, t, cond: WanConditioning, dtype, adapter=None, batch: bool = True,
                  guidance: Optional[Guidance] = None):
    """Multi-term guidance (`guidance`, default `cond.guidance`): base + Σ scale·(a − b) over the passes'
    predictions. The one place guidance is combined: plain CFG (`guided`) is its two-pass case.

    `batch` (the settings' batch_cfg): all passes in one forward, rows in the order of `guidance.passes`, when
    their prompts have one shape, the latents are one clip, and the passes either change nothing in `extra` or
    every per-call input hook reads per-row inputs: the batched call's `cond.extra[PASS_ROWS]` lists each row's
    pass extras. Otherwise one DiT call per pass."""
    g = guidance if guidance is not None else cond.guidance
    passes = list(g.passes.items())
    embeds = [p.embeds for _, p in passes]
    if passes_batched(g, batch, latents, model, adapter):
        rows = [p.extra for _, p in passes]
        row_cond = dataclasses.replace(cond, extra={**cond.extra, PASS_ROWS: rows}) if any(rows) else cond
        out = predict(model, torch.cat([latents] * len(passes)), t,
                      torch.cat([e.to(embeds[0]) for e in embeds]), row_cond, dtype, adapter)
        preds = dict(zip([name for name, _ in passes], out.chunk(len(passes))))
    else:
        preds = {}
        for name, p in passes:
            pass_cond = dataclasses.replace(cond, extra={**cond.extra, **p.extra}) if p.extra else cond
            preds[name] = predict(model, latents, t, p.embeds, pass_cond, dtype, adapter)
    out = preds[g.base]
    for scale, a, b in g.terms:
        out = out + scale * (preds[a] - preds[b])
    return out


def flow_prediction(model, latents, t, cond: WanConditioning, cfg: float, dtype, batch_cfg: bool = True,
                    adapter=None, step: int = 0):
    """One step's guided flow; window by window (each with its own conditioning, overlaps blended) when the
    conditioning carries a window schedule."""
    def guide(x, c):
        if c.guidance is not None:
            return guided_passes(model, x, t, c, dtype, adapter, batch_cfg)
        return guided(model, x, t, c, cfg, dtype, batch_cfg, adapter)
    if cond.windows is None:
        return guide(latents, cond)
    length = latents.shape[2]
    return windows_mod.blend_windows(
        lambda s, e: guide(latents[:, :, s:e], cond.windows.window_condition(cond, s, e, length)),
        length, cond.windows.spans(length), blend=step >= cond.windows.blend_from_step)


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


def _fp8_model(model, handle: WanHandle, entry, settings: SamplerSettings, stats: dict, loras=()):
    """A copy of the expert with fp8 GEMMs (the cached model is not touched); the original when it cannot be."""
    if entry is not None and entry.runner is not None:
        import logging
        logging.getLogger("vibeboard.wan").warning(
            "fp8 GEMMs need the DiT fully resident (block swap moves its weights while it runs): sampling in %s",
            str(handle.dtype).replace("torch.", ""))
        return model
    from . import fp8_gemm
    compiled = settings.compile and compile_supported(handle, entry)
    if compiled:   # the same copy while the merged LoRAs are the same: no recompiles per run
        signature = tuple((src if isinstance(src, str) else id(src), float(strength),
                           os.path.getmtime(src) if isinstance(src, str) and os.path.exists(src) else None)
                          for src, strength in loras)
        copy, converted = fp8_gemm.kept_fp8_copy(model, signature)
    else:
        copy, converted = fp8_gemm.fp8_copy(model)
    stats["precision"], stats["fp8_layers"] = "fp8", converted
    stats["fp8_fused"] = fp8_gemm.scaled_mm_available(handle.device)
    if compiled:
        compile_blocks(copy)
    return copy


def _open_expert(handle: WanHandle, part: str, settings: SamplerSettings, cond: WanConditioning,
                 stack: ExitStack, stats: Optional[dict] = None):
    """The expert on the compute device with this handle's LoRAs merged, compiled if asked, with the
    conditioning's RoPE positions and attention processors installed. Everything is undone when `stack` closes."""
    stats = {} if stats is None else stats
    model = stack.enter_context(handle.use(part))
    entry = handle.manager.models.get(handle.keys[part])
    if settings.compile and compile_supported(handle, entry):
        compile_blocks(model)
    # LoRAs are merged while this expert runs and removed after (the cached model stays clean).
    loras = loras_for(handle, part)
    stack.enter_context(lora_mod.applied(model, loras))
    if settings.precision == "fp8":   # after the LoRAs (they are in the quantised weights), before the patches
        model = _fp8_model(model, handle, entry, settings, stats, loras)
    if cond.rope_positions is not None or cond.rope_h_offsets is not None or cond.rope_w_offsets is not None:
        stack.enter_context(rope_mod.frame_positions(model, cond.rope_positions, cond.rope_h_offsets,
                                                     cond.rope_w_offsets))
    for processor in cond.attention:
        stack.enter_context(processor(model))
    kernel = self_attention_kernel(settings.attention, handle.device)
    if kernel is not None:  # after the conditioning's processors: what they own keeps its processor
        from .attention.processor import kernel_attention
        stack.enter_context(kernel_attention(model, kernel, handle.device))
    stack.enter_context(attention_context(settings.attention, handle.device))
    if entry is None or entry.runner is None:   # resident: nothing moves the FFN weights under the fused GEMM
        from .ffn_fused import fused_ffn
        stats["fused_ffn"] = stack.enter_context(fused_ffn(model, handle.device))
    # A model adapter's own weights are a handle part too (VRAM-managed like the DiT).
    adapter = stack.enter_context(handle.use(handle.adapter)) if handle.adapter else None
    return model, adapter


def _holds(cond: WanConditioning, noise: torch.Tensor, device) -> list:
    holds = []
    if cond.clean_latents is not None:  # Wan2.2 TI2V: the first k latent frames are the clean image
        k = cond.clean_latents.shape[2]
        mask = torch.zeros(1, 1, noise.shape[2], 1, 1)
        mask[:, :, :k] = 1
        full = torch.zeros(1, *noise.shape[1:])
        full[:, :, :k] = cond.clean_latents.float().cpu()
        holds.append(HeldRegion(full, mask, "clean"))
    for h in cond.holds:
        holds.append(HeldRegion(h.latents, h.mask, h.mode, h.noise if h.noise is not None else noise))
    return [HeldRegion(h.latents.to(device), h.mask.to(device), h.mode,
                       None if h.noise is None else h.noise.to(device)) for h in holds]


def sample(handle: WanHandle, cond: WanConditioning, settings: SamplerSettings, shape: tuple,
           init_latents: Optional[torch.Tensor] = None, callback: Optional[Callable] = None,
           preview: bool = False, normalized: bool = False, stats: Optional[dict] = None,
           audit_cache: bool = False) -> torch.Tensor:
    """Generate latents of `shape` [B,C,T,h,w] (T excludes the `cond.num_ref_frames` leading frames, which are
    sampled with the rest and dropped at the end). Returns raw VAE latents (normalised ones with `normalized`).

    init_latents (raw) + denoise < 1 → video-to-video: start from the noised input at that strength.
    cond.holds: latent regions held fixed (clean, or on their noise trajectory) after every step and at the end.
    callback(step, total, latents_normalised) is called after each step; runtime progress/interrupt too.
    stats (a dict, filled; also `LAST_STATS`): steps, DiT forwards, batch rows, precision, step-cache skips.
    audit_cache: also compute the steps the step cache serves and record its error (benchmarks only: no gain).
    """
    if settings.precision not in PRECISIONS:
        raise ValueError(f"unknown precision {settings.precision!r}; choose one of {PRECISIONS}")
    device = handle.device
    steps = max(1, int(settings.steps))
    sched = make_scheduler(settings.scheduler, settings.shift)
    sched.set_timesteps(steps, device=device)
    timesteps = sched.timesteps
    sigmas = sched.sigmas.detach().float().cpu()
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
            sigma = float(sigmas[start])
            latents = (1 - sigma) * x0 + sigma * latents
            if hasattr(sched, "set_begin_index"):
                sched.set_begin_index(start)
    if cond.clean_latents is not None and cond.clean_token_mask is None:
        k = cond.clean_latents.shape[2]
        token_mask = torch.zeros(1, full_t, h, w)
        token_mask[:, :k] = 1
        cond = dataclasses.replace(cond, clean_token_mask=token_mask)
    holds = _holds(cond, noise, device)
    for hold in holds:
        latents = hold.apply(latents, float(sigmas[start]))
    run = timesteps[start:]
    bar = runtime.progress_bar(len(run))
    boundary = None
    if handle.boundary_ratio is not None and handle.has("transformer_2"):
        boundary = handle.boundary_ratio * 1000
    part = None
    stack = None
    stats = {} if stats is None else stats
    stats.update(steps=len(run), forwards=0, rows=0, precision=str(handle.dtype).replace("torch.", ""))
    cache = StepCache(settings.step_cache, len(run), audit=audit_cache)
    tally = [0, 0]
    tally_token = _TALLY.set(tally)
    try:
        for i, ts in enumerate(run):
            runtime.check_interrupt()
            want = "transformer_2" if boundary is not None and float(ts) < boundary else "transformer"
            if want != part:
                if stack is not None:
                    stack.close()
                stack = ExitStack()
                model, adapter = _open_expert(handle, want, settings, cond, stack, stats)
                part = want
                cache.reset()   # a residual of one expert does not carry over to the other
            cfg = settings.cfg_2 if (part == "transformer_2" and settings.cfg_2 is not None) else settings.cfg
            with torch.no_grad():
                flow = cache.reuse(i, latents) if cache.enabled else None
                if flow is None or cache.audit:
                    computed = flow_prediction(model, latents, ts.reshape(1), cond, cfg, handle.dtype,
                                               settings.batch_cfg, adapter, i)
                    if flow is None:
                        flow = computed
                        cache.store(latents, flow)
                    else:
                        cache.record_error(flow, computed)
            latents = sched.step(flow, ts, latents, return_dict=False)[0]
            s_next = float(sigmas[start + i + 1])
            for hold in holds:
                latents = hold.apply(latents, s_next)
            if callback is not None:
                callback(i + 1, len(run), latents)
            bar.update_absolute(i + 1, len(run), preview_image(latents) if preview else None)
    finally:
        _TALLY.reset(tally_token)
        if stack is not None:
            stack.close()
    stats["forwards"], stats["rows"] = tally
    if cache.enabled:
        stats.update(cache.stats())
    _report(stats, settings)
    for hold in holds:  # the held regions end exactly at their latents
        latents = hold.apply(latents, 0.0)
    latents = latents[:, :, cond.num_ref_frames:]
    if normalized:
        return latents.float()
    return denormalize(handle, latents).cpu()


def _report(stats: dict, settings: SamplerSettings) -> None:
    """Keep the stats for the CLI / benchmarks and print one line when a lossy option ran."""
    LAST_STATS.clear()
    LAST_STATS.update(stats)
    if settings.step_cache > 0 or settings.precision != "bf16":
        parts = [f"precision {stats.get('precision')}"]
        if "skipped" in stats:
            parts.append(f"step cache {stats['skipped']}/{stats['steps']} steps skipped "
                         f"({100 * stats['skip_ratio']:.0f} %)")
        print(f"Wan sampler: {stats['forwards']} DiT forwards for {stats['steps']} steps, " + ", ".join(parts),
              flush=True)


def settings_or_default(handle: WanHandle, sampler: Optional[SamplerSettings], **model_defaults) -> SamplerSettings:
    """The wired sampler settings, else this model's (or a research model's) published defaults."""
    if sampler is not None:
        return sampler
    d = {**handle.defaults(), **model_defaults}
    d.pop("boundary", None)
    return SamplerSettings(**d)
