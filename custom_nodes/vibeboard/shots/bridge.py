"""Glue between the Shot Studio mechanisms and the Wan layer's `VB_WAN` handle (vibeboard.wan).

The mechanisms take plain modules; with a handle, experts must run inside `handle.use(part)` (VRAM manager) with
the handle's LoRAs merged, one expert at a time. `run_options(handle, settings)` packs that for the sampler.
"""
from __future__ import annotations

import contextlib
from typing import Optional

import torch


def run_options(handle, settings) -> dict:
    from ..models import lora as lora_mod
    from ..wan import sampler as S

    parts = ["transformer", "transformer_2"]

    @contextlib.contextmanager
    def open_expert(idx: int):
        part = parts[idx]
        with contextlib.ExitStack() as stack:
            model = stack.enter_context(handle.use(part))
            stack.enter_context(lora_mod.applied(model, S.loras_for(handle, part)))
            stack.enter_context(S.attention_context(getattr(settings, "attention", "auto"), handle.device))
            yield model

    return {
        "open_expert": open_expert,
        "has_second_expert": handle.has("transformer_2"),
        "dtype": handle.dtype,
        "scheduler": S.make_scheduler(settings.scheduler, settings.shift),
    }


def guidance(handle, settings):
    """(low-noise, high-noise) CFG like Wan2.2, or one float."""
    if handle.has("transformer_2") and getattr(settings, "cfg_2", None):
        return (float(settings.cfg_2), float(settings.cfg))
    return float(settings.cfg)


def settings_or_default(handle, sampler):
    from ..wan import sampler as S
    if sampler is not None:
        return sampler
    d = handle.defaults()
    return S.SamplerSettings(cfg=d["cfg"], shift=d["shift"])


def text_embeds(text: dict, device) -> tuple:
    pos = text["prompt_embeds"].to(device)
    neg = text.get("negative_embeds")
    return pos, (None if neg is None else neg.to(device))


@contextlib.contextmanager
def vae(handle):
    """The VAE on the compute device for a block of encode/decode calls."""
    with handle.use("vae") as v:
        yield v


def transformer_module(handle) -> torch.nn.Module:
    """The DiT object for inspection (config, is it VACE) without loading its weights."""
    return handle.module("transformer")


def image_embeds_if_needed(handle, image: Optional[torch.Tensor]):
    """Wan2.1 I2V needs CLIP image tokens; Wan2.2 A14B has none (image_dim unset)."""
    cfg = transformer_module(handle).config
    if not getattr(cfg, "image_dim", None):
        return None
    if image is None or not handle.has("image_encoder"):
        raise ValueError("this I2V model needs CLIP vision image tokens: load clip_vision and give an image")
    from ..wan import conditioning as C
    return C.clip_image_tokens(handle, image[:1]).to(handle.device)
