"""LoRA files in the formats people share, merged into a Wan DiT with a strength, and removed again.

Formats: diffusers/PEFT (`transformer.blocks.0.attn1.to_q.lora_A.weight`, also PEFT on the original names
`blocks.0.self_attn.q.lora_A.weight`), kohya/ComfyUI (`lora_unet_blocks_0_self_attn_q.lora_down.weight` +
`.alpha`), and `diffusion_model.blocks.0.self_attn.q.lora_{A,B|down,up}.weight`; `.diff`/`.diff_b` full
deltas too (step-distilled LoRAs such as lightx2v/CausVid carry them for every bias and for the norms' weights; in
diffusers/PEFT files a bias delta is `lora_B.bias`), on any layer with a weight (Linear, norms, the patch-embedding
conv) and on bare parameters (`modulation`). Merging patches the weights in place (no extra matmuls per step);
`remove()` restores the exact original tensors, so strength 0 or removal leaves the model bit-identical.
"""
from __future__ import annotations

import json
import math
import os
from contextlib import contextmanager

import torch

from . import wan_keys
from .fp8 import Fp8Linear
from .loaders import read_safetensors

_SUFFIXES = [(".lora_A.default.weight", "down"), (".lora_B.default.weight", "up"),
             (".lora_B.default.bias", "diff_b"), (".lora_B.bias", "diff_b"),
             (".lora_A.weight", "down"), (".lora_B.weight", "up"), (".lora_down.weight", "down"),
             (".lora_up.weight", "up"), (".alpha", "alpha"), (".diff_b", "diff_b"), (".diff", "diff")]
_PREFIXES = ("base_model.model.", "transformer.", "model.diffusion_model.", "diffusion_model.", "unet.")
_KOHYA = ("lora_unet_", "lora_transformer_")


def parse_lora(state: dict) -> dict:
    """{base name (prefix stripped): {"down","up","alpha","diff","diff_b"}}. Other formats (LoHa, LoKr, DoRA
    magnitudes) are refused rather than half-applied."""
    groups: dict = {}
    unknown = []
    for key, value in state.items():
        for suffix, part in _SUFFIXES:
            if key.endswith(suffix):
                base = key[:-len(suffix)]
                break
        else:
            unknown.append(key)
            continue
        for prefix in _PREFIXES:
            if base.startswith(prefix):
                base = base[len(prefix):]
                break
        groups.setdefault(base, {})[part] = value
    if unknown:
        raise ValueError(f"unsupported LoRA keys (LoHa/LoKr/DoRA are not supported): {unknown[:4]}"
                         f"{'…' if len(unknown) > 4 else ''}")
    return groups


def _targets(model: torch.nn.Module) -> dict:
    """Every name a LoRA may use for each layer with a weight (Linear, norm, conv) or bare parameter (modulation
    tables) of the model → its diffusers name."""
    names = {}
    found = [name for name, module in model.named_modules()
             if name and isinstance(getattr(module, "weight", None), torch.Tensor)]
    bare = [name for name, _ in model.named_parameters() if name.rpartition(".")[2] not in ("weight", "bias")]
    for name in found + bare:
        orig = wan_keys.diffusers_to_wan_key(name) if name in bare else wan_keys.diffusers_module_to_wan(name)
        for alias in (name, orig):
            names[alias] = name
            for k in _KOHYA:
                names[k + alias.replace(".", "_")] = name
    return names


class _Target:
    """What a LoRA name points at: a layer (its weight and bias) or a bare parameter (the weight, no bias)."""

    def __init__(self, name: str, modules: dict, params: dict):
        self.name = name
        self.module = modules.get(name)
        if self.module is not None:
            self.weight, self.bias = self.module.weight, getattr(self.module, "bias", None)
        else:
            self.weight, self.bias = params[name], None


def resolve(model: torch.nn.Module, groups: dict, strict=True) -> dict:
    """{module name: parts}. strict: True = every LoRA name must match a layer; "any" = at least one must
    (the rest are skipped with a warning, like ComfyUI); False = never raise."""
    names = _targets(model)
    out, unknown = {}, []
    for base, parts in groups.items():
        target = names.get(base)
        if target is None:
            unknown.append(base)
            continue
        out[target] = parts
    if strict == "any" and unknown and out:
        import logging
        logging.getLogger("vibeboard").warning("LoRA: %d of %d names match no layer of this model, skipped: %s",
                                               len(unknown), len(groups), unknown[:5])
    elif strict and unknown:
        raise ValueError(f"LoRA names no layer of this model: {unknown[:5]}{'…' if len(unknown) > 5 else ''} "
                         f"({len(unknown)} of {len(groups)})")
    return out


def read_lora(path: str, alpha=None, rslora=None) -> dict:
    """Load a .safetensors LoRA; a PEFT `adapter_config.json` beside it supplies lora_alpha / use_rslora."""
    state = read_safetensors(path)
    groups = parse_lora(state)
    cfg_path = os.path.join(os.path.dirname(path), "adapter_config.json")
    if (alpha is None or rslora is None) and os.path.isfile(cfg_path):
        with open(cfg_path) as f:
            cfg = json.load(f)
        alpha = cfg.get("lora_alpha") if alpha is None else alpha
        rslora = cfg.get("use_rslora") if rslora is None else rslora
    for parts in groups.values():
        if "alpha" not in parts and alpha is not None and "down" in parts:
            rank = parts["down"].shape[0]
            parts["alpha"] = torch.tensor(float(alpha) * (rank ** 0.5 if rslora else 1.0))
    return groups


def delta_for(parts: dict, shape: tuple, device=None, bias_shape=None) -> tuple:
    """(weight delta fp32 of `shape`, bias delta or None) at strength 1, computed on `device` (the weight's).
    A low-rank pair on a conv weight is reshaped to it (kohya conv LoRAs: down [r, in, *k], up [out, r, 1…])."""
    shape = tuple(shape)
    dw = None
    if "down" in parts and "up" in parts:
        down, up = parts["down"].to(device).float(), parts["up"].to(device).float()
        down, up = down.reshape(down.shape[0], -1), up.reshape(up.shape[0], -1)
        rank = down.shape[0]
        scale = float(parts["alpha"]) / rank if "alpha" in parts else 1.0
        dw = (up @ down) * scale
        if len(shape) > 2 and dw.shape[0] == shape[0] and dw.numel() == math.prod(shape):
            dw = dw.reshape(shape)
    if "diff" in parts:
        diff = parts["diff"].to(device).float()
        dw = diff if dw is None else dw + diff
    if dw is not None and tuple(dw.shape) != shape:
        raise ValueError(f"LoRA delta {tuple(dw.shape)} does not fit a {'×'.join(map(str, shape))} layer")
    db = parts["diff_b"].to(device).float() if "diff_b" in parts else None
    if db is not None and bias_shape is not None and tuple(db.shape) != tuple(bias_shape):
        raise ValueError(f"LoRA bias delta {tuple(db.shape)} does not fit a bias of {tuple(bias_shape)}")
    return dw, db


def check_fits(model: torch.nn.Module, groups: dict, strict="any") -> int:
    """Raise ValueError when `groups` would not merge into `model` (names as `resolve`, delta shapes), without
    touching any weight or computing a delta. Returns how many layers it targets."""
    modules, params = dict(model.named_modules()), dict(model.named_parameters())
    resolved = resolve(model, groups, strict)
    for name, parts in resolved.items():
        target = _Target(name, modules, params)
        want = tuple(target.weight.shape)
        shapes = []
        if "down" in parts and "up" in parts:
            down, up = parts["down"], parts["up"]
            if up.reshape(up.shape[0], -1).shape[1] != down.shape[0]:
                raise ValueError(f"LoRA {name}: up {tuple(up.shape)} and down {tuple(down.shape)} ranks differ")
            pair = (up.shape[0], down.reshape(down.shape[0], -1).shape[1])
            fits_conv = len(want) > 2 and pair[0] == want[0] and pair[0] * pair[1] == math.prod(want)
            shapes.append(want if fits_conv else pair)
        if "diff" in parts:
            shapes.append(tuple(parts["diff"].shape))
        for got in shapes:
            if tuple(got) != want:
                raise ValueError(f"LoRA delta {tuple(got)} does not fit the {'×'.join(map(str, want))} layer {name}")
        if "diff_b" in parts:
            if target.bias is None:
                raise ValueError(f"LoRA {name}: a bias delta (diff_b) for a layer without a bias")
            if tuple(parts["diff_b"].shape) != tuple(target.bias.shape):
                raise ValueError(f"LoRA bias delta {tuple(parts['diff_b'].shape)} does not fit the bias "
                                 f"{tuple(target.bias.shape)} of {name}")
    return len(resolved)


def _host_copy(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu", copy=True)


class LoraPatch:
    """Merged LoRAs on one model; `remove()` puts the original tensors back."""

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.saved = {}     # target name → (weight data, bias data, scale)
        self.modules = dict(model.named_modules())
        self.params = dict(model.named_parameters())

    def _before_edit(self) -> None:
        hook = getattr(self.model, "_vb_before_weight_edit", None)  # block swap: park slot occupants
        if hook is not None:
            hook()

    def add(self, groups: dict, strength: float, strict: bool = True) -> list:
        if strength == 0:
            return []
        self._before_edit()
        touched = []
        for name, parts in resolve(self.model, groups, strict).items():
            target = _Target(name, self.modules, self.params)
            module = target.module
            dw, db = delta_for(parts, target.weight.shape, target.weight.device,
                               None if target.bias is None else target.bias.shape)
            if db is not None and target.bias is None:
                raise ValueError(f"LoRA {name}: a bias delta (diff_b) for a layer without a bias")
            if name not in self.saved:
                # Originals are kept in host RAM (a 14B model's touched weights would not fit twice in VRAM).
                self.saved[name] = (_host_copy(target.weight.data),
                                    None if target.bias is None else _host_copy(target.bias.data),
                                    None if getattr(module, "scale_weight", None) is None
                                    else _host_copy(module.scale_weight))
            with torch.no_grad():
                if dw is not None:
                    if isinstance(module, Fp8Linear):
                        w = module.dequantized(torch.float32) + strength * dw.to(module.weight.device)
                        fp8 = module.weight.dtype
                        scale = (w.abs().max() / (448.0 if fp8 == torch.float8_e4m3fn else 57344.0)).clamp(min=1e-12)
                        module.weight.data.copy_((w / scale).to(fp8))
                        module.scale_weight.copy_(scale.reshape(1))
                    else:
                        w = target.weight
                        w.data.copy_((w.data.float() + strength * dw.to(w.device)).to(w.dtype))
                if db is not None:
                    b = target.bias
                    b.data.copy_((b.data.float() + strength * db.to(b.device)).to(b.dtype))
            touched.append(name)
        return touched

    def remove(self) -> None:
        if self.saved:
            self._before_edit()
        with torch.no_grad():
            for name, (w, b, scale) in self.saved.items():
                target = _Target(name, self.modules, self.params)
                target.weight.data.copy_(w.to(target.weight.device))
                if b is not None:
                    target.bias.data.copy_(b.to(target.bias.device))
                if scale is not None:
                    target.module.scale_weight.copy_(scale.to(target.module.scale_weight.device))
        self.saved = {}


_lora_cache: dict = {}


def cached_lora(path: str) -> dict:
    key = (os.path.abspath(path), os.path.getmtime(path))
    if key not in _lora_cache:
        _lora_cache.clear() if len(_lora_cache) > 8 else None
        _lora_cache[key] = read_lora(path)
    return _lora_cache[key]


@contextmanager
def applied(model: torch.nn.Module, loras):
    """Merge [(path or parsed groups, strength)] for the duration of a block (the sampler's use)."""
    patch = LoraPatch(model)
    try:
        for source, strength in loras or []:
            groups = cached_lora(source) if isinstance(source, str) else source
            patch.add(groups, float(strength), strict="any")
        yield patch
    finally:
        patch.remove()
