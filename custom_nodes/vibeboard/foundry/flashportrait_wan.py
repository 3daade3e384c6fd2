"""FlashPortrait on the one Wan runtime: a model adapter (the expression cross-attention installed in a copy of
the Wan2.1-I2V DiT, `flashportrait.patch_expression_attention`) and a conditioning builder for `wan.sampler.sample`.

What the builder gives the sampler (upstream `wan/pipeline/pipeline_wan_long.py`, `infer.py`, c72d9de):
- windows of `context_size` latent frames overlapping by `context_overlap`, the last aligned to the end; every
  window is a fresh I2V clip to the model (the reference portrait as its first frame: the same I2V mask + latents
  and CLIP image tokens for each window) with its own frames' expression tokens (driving frames 4·start …
  4·(end−1), grouped per latent frame); overlaps blended linearly j/(n−1) from the second step on (upstream's
  first step lets the later window overwrite);
- upstream's guidance, branch for branch: with emo_cfg > 1 and text_cfg ≠ 1
  `uncond + text_cfg·(no_emo − uncond) + emo_cfg·(full − no_emo)` (uncond: negative prompt, expression off;
  no_emo: prompt, expression off; full: prompt, expression at `expression_scale`); emo_cfg > 1 alone
  `no_emo + emo_cfg·(full − no_emo)`; text_cfg alone `no_text + text_cfg·(full − no_text)` (negative prompt with
  the expression on); neither: `full`;
- Euler flow matching (diffusers FlowMatchEulerDiscreteScheduler, shift 5), upstream's "Flow" sampler.
The sampler owns seed, steps, placement (memory modes = `WanHandle.with_memory_mode`), progress and interrupt.

Differences from upstream, on purpose: overlapping windows blend their flow predictions and the sampler takes one
Euler step over the whole clip; upstream steps each window and blends the stepped latents. For Euler the two are
the same up to float rounding (the step is linear in the prediction).
"""
from __future__ import annotations

import dataclasses
import os
import threading
from typing import Callable, Optional

import torch

from ..common import grad
from ..wan import conditioning as C
from ..wan import sampler as S
from ..wan.handle import WanHandle
from ..wan.windows import ContextWindows
from . import flashportrait as fp
from . import performance

# upstream infer.py's negative prompt (used when text_cfg ≠ 1)
NEGATIVE_PROMPT = ("色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，"
                   "丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，"
                   "静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走")
# upstream infer.py: GPU_memory_mode → the runtime's memory modes
MEMORY_MODES = {"full": "full", "model_cpu_offload": "model_offload", "sequential_cpu_offload": "sequential"}

_lock = threading.Lock()


def load_handle(base: WanHandle, transformer_path: str, dtype: str = "bf16") -> WanHandle:
    """A copy of `base` (its VAE, UMT5, CLIP vision, manager and placement) whose DiT is FlashPortrait's
    `transformer.pt` with the expression attention installed, registered once per file and dtype in the VRAM
    manager (a re-run reuses it; block swap streams the expression projections with their blocks)."""
    from ..models import loaders
    key = f"flashportrait:{os.path.abspath(transformer_path)}:{dtype}"
    with _lock:
        if key not in base.manager.models:
            with grad.outside_inference():  # kept by the VRAM manager beyond this node (common.grad)
                model, emo = fp.load_transformer(transformer_path, loaders.compute_dtype(dtype))
                fp.patch_expression_attention(model, emo)
            base.manager.register(key, model.eval())
    return adapt(base, key, loaders.compute_dtype(dtype), transformer_path)


def adapt(base: WanHandle, transformer_key: str, dtype: torch.dtype, source: str = "") -> WanHandle:
    """`base` with the registered FlashPortrait DiT as its only transformer (Wan2.1 I2V: one expert)."""
    handle = base.with_parts(transformer=transformer_key)
    handle.keys.pop("transformer_2", None)
    handle.placement.pop("transformer_2", None)
    handle.variant, handle.boundary_ratio, handle.adapter, handle.dtype = "i2v", None, None, dtype
    handle.sources["transformer"] = source or transformer_key
    return handle


def expression_guidance(prompt: torch.Tensor, negative: torch.Tensor, text_cfg: float, emo_cfg: float,
                        expression_scale: float = 1.0) -> C.Guidance:
    """Upstream's text + expression guidance as passes and terms (module docstring)."""
    full = C.GuidancePass(prompt, {"expression_scale": float(expression_scale)})
    if emo_cfg > 1.0:
        no_emo = C.GuidancePass(prompt, {"expression_scale": 0.0})
        if text_cfg != 1.0:
            uncond = C.GuidancePass(negative, {"expression_scale": 0.0})
            return C.Guidance({"full": full, "no_emo": no_emo, "uncond": uncond}, "uncond",
                              [(float(text_cfg), "no_emo", "uncond"), (float(emo_cfg), "full", "no_emo")])
        return C.Guidance({"full": full, "no_emo": no_emo}, "no_emo", [(float(emo_cfg), "full", "no_emo")])
    if text_cfg != 1.0:
        no_text = C.GuidancePass(negative, {"expression_scale": float(expression_scale)})
        return C.Guidance({"full": full, "no_text": no_text}, "no_text", [(float(text_cfg), "full", "no_text")])
    return C.Guidance({"full": full}, "full", [])


def tokens_for_window(tokens_pix: torch.Tensor, start: int, end: int):
    """Expression tokens of latent frames [start, end): driving frames 4·start … 4·(end−1), per latent frame.
    A window starting mid-clip is a fresh I2V clip to the model: its first latent frame is a single-frame group,
    so it takes that group's first driving frame (as upstream slices 4·start … 4·end+1)."""
    return fp.per_latent_frame(tokens_pix[:, 4 * start:4 * (end - 1) + 1])


def pad_tokens(tokens_pix: torch.Tensor, latent_frames: int) -> torch.Tensor:
    """[1, F, T, D] → exactly 4·(latent_frames−1)+1 driving frames (the last expression held over Wan's padding)."""
    need = 4 * (latent_frames - 1) + 1
    if tokens_pix.shape[1] < need:
        tokens_pix = torch.cat([tokens_pix, tokens_pix[:, -1:].expand(-1, need - tokens_pix.shape[1], -1, -1)], 1)
    return tokens_pix[:, :need]


def build_conditioning(handle: WanHandle, reference: torch.Tensor, prompt: torch.Tensor,
                       negative: Optional[torch.Tensor],
                       tokens_pix: torch.Tensor, frames_out: int, height: int, width: int, *,
                       text_cfg: float = 1.0, emo_cfg: float = 4.0, expression_scale: float = 1.0,
                       context_size: int = 51, context_overlap: int = 30,
                       image_embeds: Optional[torch.Tensor] = None, concat_latents: Optional[torch.Tensor] = None):
    """(WanConditioning, latent shape) for `frames_out` frames of `reference` IMAGE [1,H,W,3] performing
    `tokens_pix` [1, F, 24, D] (one row per output frame). prompt/negative: text embeddings [1, 512, D_text].
    image_embeds / concat_latents: the CLIP tokens and one window's I2V input when already made (else encoded
    here with the handle's CLIP vision and VAE)."""
    lat_t = performance.latent_frames_for(frames_out)
    tokens_pix = pad_tokens(tokens_pix, lat_t)
    windows = ContextWindows(int(context_size), int(context_overlap), blend_from_step=1)
    spans = windows.spans(lat_t)
    size = spans[0][1] - spans[0][0]
    per_window = {span: tokens_for_window(tokens_pix, *span) for span in spans}  # made once, moved once

    def window_condition(cond, start, end, length):
        tokens, mask = per_window[(start, end)]
        return dataclasses.replace(cond, extra={**cond.extra, "expression_tokens": tokens,
                                                "expression_mask": mask})
    windows.condition = window_condition
    if image_embeds is None:
        image_embeds = C.clip_image_tokens(handle, reference[:1])
    if concat_latents is None:  # each window's I2V input: the portrait as the first of the window's frames
        concat_latents = C.i2v_concat(handle, 4 * (size - 1) + 1, height, width, reference[:1])
    cond = C.WanConditioning(prompt_embeds=prompt, image_embeds=image_embeds, concat_latents=concat_latents,
                             guidance=expression_guidance(prompt, negative, text_cfg, emo_cfg, expression_scale),
                             windows=windows)
    shape = (1, handle.latent_channels, lat_t, height // handle.scale_spatial, width // handle.scale_spatial)
    return cond, shape


def output_size(reference: torch.Tensor) -> tuple:
    """(height, width): the portrait's size, down to multiples of 16 (Wan's latent grid with 2×2 patches)."""
    h, w = reference.shape[1] // 16 * 16, reference.shape[2] // 16 * 16
    if not h or not w:
        raise fp.FlashPortraitError(f"reference image {reference.shape[2]}×{reference.shape[1]} is smaller than 16 px")
    return h, w


@torch.no_grad()
def generate(handle: WanHandle, reference: torch.Tensor, prompt: str, tokens_pix: torch.Tensor, frames_out: int, *,
             negative_prompt: str = NEGATIVE_PROMPT, steps: int = 30, shift: float = 5.0, text_cfg: float = 1.0,
             emo_cfg: float = 4.0, expression_scale: float = 1.0, context_size: int = 51, context_overlap: int = 30,
             seed: int = 0, callback: Optional[Callable] = None) -> torch.Tensor:
    """Frames [frames_out, H, W, 3] of the portrait `reference` IMAGE [1,H,W,3] performing `tokens_pix`
    (`flashportrait.PortraitEncoder` output, one row per output frame), through the one Wan sampler."""
    height, width = output_size(reference)
    if text_cfg != 1.0:  # the negative prompt is only read by text guidance
        embeds = C.encode_text(handle, [prompt, negative_prompt])
        positive, negative = embeds[:1], embeds[1:]
    else:
        positive, negative = C.encode_text(handle, prompt), None
    cond, shape = build_conditioning(handle, reference, positive, negative, tokens_pix, frames_out, height, width,
                                     text_cfg=text_cfg, emo_cfg=emo_cfg, expression_scale=expression_scale,
                                     context_size=context_size, context_overlap=context_overlap)
    settings = S.SamplerSettings(steps=int(steps), cfg=1.0, shift=float(shift), scheduler="euler", seed=int(seed))
    raw = S.sample(handle, cond, settings, shape, callback=callback)
    return C.vae_decode_images(handle, raw)[:frames_out]
