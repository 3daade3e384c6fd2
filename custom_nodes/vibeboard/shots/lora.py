"""LoRA loading for the research checkpoints Shot Studio uses, onto diffusers' Wan transformers.

Published layouts handled (all read from .safetensors; convert .pth/.ckpt yourself, we never unpickle):
- StoryMem (Kevin-thu/StoryMem, PEFT on the original Wan `WanModel`): `blocks.N.self_attn.q.lora_A.weight`,
  optional `base_model.model.` prefix and `.default` adapter name; r=128, alpha=128, **rsLoRA** (scale alpha/sqrt(r)).
- ReCo (HiDream-ai/ReCo, PEFT `inject_adapter_in_model` on DiffSynth's Wan DiT and VACE): the same original names
  for `blocks.N.*` and `vace_blocks.N.*` with `.lora_A.default.weight`; r=128, alpha=128 (scale 1).
  Its diffusers conversion (`transformer.blocks.N.attn1.to_q.lora_A.weight`) is accepted too.
- kohya/ComfyUI style `lora_down` / `lora_up` / `.alpha` keys.

The LoRA is applied as removable forward hooks (x -> W x + s B A x), so a shared model handle is not altered
for other nodes; `merge=True` folds it into the weights instead (faster; `remove()` subtracts it again).
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn

_PREFIXES = ("base_model.model.", "diffusion_model.", "pipe.dit.", "pipe.vace.", "transformer.", "module.",
             "model.", "dit.", "vace.")

# original Wan module path (inside a block) -> diffusers path
_BLOCK_MAP = {
    "self_attn.q": "attn1.to_q", "self_attn.k": "attn1.to_k", "self_attn.v": "attn1.to_v", "self_attn.o": "attn1.to_out.0",
    "cross_attn.q": "attn2.to_q", "cross_attn.k": "attn2.to_k", "cross_attn.v": "attn2.to_v",
    "cross_attn.o": "attn2.to_out.0", "cross_attn.k_img": "attn2.add_k_proj", "cross_attn.v_img": "attn2.add_v_proj",
    "ffn.0": "ffn.net.0.proj", "ffn.2": "ffn.net.2", "before_proj": "proj_in", "after_proj": "proj_out",
}
_TOP_MAP = {
    "head.head": "proj_out", "text_embedding.0": "condition_embedder.text_embedder.linear_1",
    "text_embedding.2": "condition_embedder.text_embedder.linear_2",
    "time_embedding.0": "condition_embedder.time_embedder.linear_1",
    "time_embedding.2": "condition_embedder.time_embedder.linear_2",
    "time_projection.1": "condition_embedder.time_proj",
}
_WEIGHT_RE = re.compile(r"^(?P<mod>.+?)\.(?P<kind>lora_A|lora_B|lora_down|lora_up)(?:\.[A-Za-z0-9_]+)?\.weight$")
_BLOCK_RE = re.compile(r"^(?P<blocks>blocks|vace_blocks)\.(?P<idx>\d+)\.(?P<rest>.+)$")


def to_diffusers_module_name(name: str) -> str:
    """Original-Wan / PEFT / kohya module path -> diffusers WanTransformer3DModel module path."""
    changed = True
    while changed:
        changed = False
        for p in _PREFIXES:
            if name.startswith(p):
                name, changed = name[len(p):], True
    name = name.replace("lora_unet_", "")
    m = _BLOCK_RE.match(name)
    if m:
        rest = _BLOCK_MAP.get(m.group("rest"), m.group("rest"))
        return f"{m.group('blocks')}.{m.group('idx')}.{rest}"
    return _TOP_MAP.get(name, name)


@dataclass
class LoraPair:
    down: torch.Tensor  # [r, in]
    up: torch.Tensor    # [out, r]
    alpha: Optional[float] = None


def parse_lora_state_dict(sd: dict) -> dict[str, LoraPair]:
    """Group a LoRA state dict into {diffusers module name: LoraPair}."""
    pairs: dict[str, dict] = {}
    for key, value in sd.items():
        if key.endswith(".alpha"):
            pairs.setdefault(to_diffusers_module_name(key[: -len(".alpha")]), {})["alpha"] = float(value)
            continue
        m = _WEIGHT_RE.match(key)
        if not m:
            continue
        slot = "down" if m.group("kind") in ("lora_A", "lora_down") else "up"
        pairs.setdefault(to_diffusers_module_name(m.group("mod")), {})[slot] = value
    out = {}
    for name, p in pairs.items():
        if "down" in p and "up" in p:
            out[name] = LoraPair(p["down"], p["up"], p.get("alpha"))
    return out


@dataclass
class LoraHandle:
    applied: list = field(default_factory=list)     # module names that got a LoRA
    unmatched: list = field(default_factory=list)   # LoRA module names not found in the model
    _hooks: list = field(default_factory=list)
    _merged: list = field(default_factory=list)     # (linear, delta)

    def remove(self):
        for h in self._hooks:
            h.remove()
        with torch.no_grad():
            for lin, delta in self._merged:
                lin.weight -= delta.to(lin.weight.dtype)
        self._hooks.clear()
        self._merged.clear()


def load_lora_file(path: str) -> dict:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"LoRA file not found: {path}")
    if not path.endswith(".safetensors"):
        raise ValueError(f"{path}: only .safetensors LoRAs are loaded (convert .pth/.ckpt to safetensors first)")
    from safetensors.torch import load_file
    return load_file(path)


def apply_lora(model: nn.Module, lora: dict | str, strength: float = 1.0, alpha: Optional[float] = None,
               rslora: bool = False, merge: bool = False, only_prefix: Optional[str] = None) -> LoraHandle:
    """Attach a LoRA to `model` (a diffusers Wan transformer). Scale = strength * alpha / r (or / sqrt(r)).

    `alpha` overrides a missing `.alpha` key (PEFT files do not store it; StoryMem and ReCo use alpha = r = 128).
    `only_prefix` keeps entries under one root ("blocks." for a plain DiT when the file also has "vace_blocks.").
    """
    sd = load_lora_file(lora) if isinstance(lora, str) else lora
    pairs = parse_lora_state_dict(sd)
    if not pairs:
        raise ValueError("no LoRA weights (lora_A/lora_B or lora_down/lora_up) found in the state dict")
    modules = dict(model.named_modules())
    handle = LoraHandle()
    for name, pair in sorted(pairs.items()):
        if only_prefix and not name.startswith(only_prefix):
            continue
        lin = modules.get(name)
        if not isinstance(lin, nn.Linear):
            handle.unmatched.append(name)
            continue
        rank = pair.down.shape[0]
        a = pair.alpha if pair.alpha is not None else (alpha if alpha is not None else rank)
        scale = strength * a / (math.sqrt(rank) if rslora else rank)
        down = pair.down.to(lin.weight.device, torch.float32)
        up = pair.up.to(lin.weight.device, torch.float32)
        if tuple(down.shape[1:]) != (lin.in_features,) or up.shape[0] != lin.out_features:
            raise ValueError(f"LoRA for {name}: shapes {tuple(up.shape)}x{tuple(down.shape)} do not fit "
                             f"Linear({lin.in_features}, {lin.out_features})")
        if merge:
            delta = (up @ down) * scale
            with torch.no_grad():
                lin.weight += delta.to(lin.weight.dtype)
            handle._merged.append((lin, delta))
        else:
            down_w, up_w = down.to(lin.weight.dtype), up.to(lin.weight.dtype)

            def hook(mod, args, out, down_w=down_w, up_w=up_w, scale=scale):
                x = args[0]
                return out + scale * nn.functional.linear(nn.functional.linear(x.to(down_w.dtype), down_w), up_w).to(out.dtype)

            handle._hooks.append(lin.register_forward_hook(hook))
        handle.applied.append(name)
    if not handle.applied:
        raise ValueError(f"none of the {len(pairs)} LoRA modules matched the model (first: {sorted(pairs)[:3]})")
    return handle
