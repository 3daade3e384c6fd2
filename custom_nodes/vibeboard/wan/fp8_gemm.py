"""Opt-in fp8 GEMMs for the Wan DiT: e4m3 weights (per-output-channel scales) × e4m3 activations (per-token scales).

Why: on Hopper `torch._scaled_mm` runs fp8 matmuls at ≈ 1.8× bf16 (1411 vs 771 TFLOP/s on an H200), and the DiT's
Linear layers are ≈ 30 % of a step. Lossy (both operands rounded to 3 mantissa bits), so never a default: the
sampler's `precision="fp8"` turns it on and the benchmark prints its per-forward error against bf16.

Only the big GEMMs inside the transformer blocks are converted (attention q/k/v/o incl. the I2V image k/v, FFN);
norms, embeddings, the modulation tables and the output head stay in their dtype (they are small, and the
head/embeddings are the most precision-sensitive).

The model is never changed: `fp8_copy(model)` returns a copy whose converted Linears are new modules and whose
other modules/parameters are *shared* with the original (ComfyUI's ModelPatcher.clone discipline: patch a
copy, never the cached model). Only the modules on the path to a converted Linear are shallow-copied.

Where `_scaled_mm` cannot run (CPU, GPUs before Ada, fp8 files of other formats) the same quantisation is
applied and the product is computed on the dequantised operands (`reference` path): same rounding error, no
speed-up, so tests on CPU check the numerics that the GPU path has.
"""
from __future__ import annotations

import copy
import logging
import re

import torch
import torch.nn as nn

from ..models.fp8 import Fp8Linear

E4M3 = torch.float8_e4m3fn
E4M3_MAX = 448.0
# Linears converted: attention (self, cross, I2V image k/v) and FFN inside each (VACE) block.
TARGET = re.compile(r"^(?:vace_)?blocks\.\d+\.(?:attn1|attn2|ffn)\.")
log = logging.getLogger("vibeboard.wan")

_scaled_mm_ok: dict = {}      # device index → False once the fused op failed there (then the reference path)


def quantize_rows(x: torch.Tensor):
    """[M, K] → (e4m3 [M, K], fp32 scales [M, 1]): one scale per row (token, or output channel of a weight)."""
    amax = x.detach().abs().amax(dim=1, keepdim=True).float().clamp(min=1e-12)
    scale = amax / E4M3_MAX
    return (x.float() / scale).to(E4M3), scale


def scaled_mm_available(device: torch.device) -> bool:
    """The fused row-wise fp8 GEMM: CUDA with compute capability ≥ 8.9 (Ada/Hopper/Blackwell)."""
    if device.type != "cuda" or not hasattr(torch, "_scaled_mm"):
        return False
    index = device.index if device.index is not None else torch.cuda.current_device()
    if _scaled_mm_ok.get(index) is False:
        return False
    return torch.cuda.get_device_capability(index) >= (8, 9)


class Fp8GemmLinear(nn.Module):
    """A Linear computing x·Wᵀ + b in fp8: W quantised once (e4m3, per output channel), x per call (per token)."""

    def __init__(self, weight_fp8: torch.Tensor, weight_scale: torch.Tensor, bias, in_features: int,
                 out_features: int):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("weight", weight_fp8.contiguous())              # [N, K] e4m3
        self.register_buffer("weight_scale", weight_scale.reshape(1, -1).float().contiguous())  # [1, N]
        self.register_buffer("bias", None if bias is None else bias.detach())

    @classmethod
    def from_linear(cls, linear: nn.Module) -> "Fp8GemmLinear":
        """From nn.Linear (quantised per output channel) or our fp8 storage Linear (its e4m3 weight and per-tensor
        scale used as they are: a ComfyUI fp8-scaled file's weights are not rounded a second time)."""
        if isinstance(linear, Fp8Linear) and linear.weight.dtype == E4M3:
            w = linear.weight.data
            scale = linear.scale_weight.float().reshape(1).expand(w.shape[0]).clone()
        else:
            src = linear.dequantized(torch.float32) if isinstance(linear, Fp8Linear) else linear.weight.data
            w, scale = quantize_rows(src)
            scale = scale.reshape(-1)
        bias = None if linear.bias is None else linear.bias.data
        return cls(w, scale, bias, linear.in_features, linear.out_features)

    def dequantized(self, dtype=torch.float32) -> torch.Tensor:
        return (self.weight.float() * self.weight_scale.reshape(-1, 1)).to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        out_dtype = x.dtype if x.dtype in (torch.bfloat16, torch.float16) else torch.bfloat16
        if scaled_mm_available(x.device):
            y = self._fused(x2, out_dtype)
            if y is not None:
                return y.to(x.dtype).reshape(*shape[:-1], self.out_features)
        return self.reference(x2).to(x.dtype).reshape(*shape[:-1], self.out_features)

    def reference(self, x2: torch.Tensor) -> torch.Tensor:
        """The same quantisation as the fused op, multiplied in fp32 (CPU, older GPUs, tests)."""
        xq, xs = quantize_rows(x2)
        y = (xq.float() * xs) @ self.dequantized(torch.float32).t()
        return y if self.bias is None else y + self.bias.float()

    def _fused(self, x2: torch.Tensor, out_dtype):
        xq, xs = quantize_rows(x2)
        bias = None if self.bias is None else self.bias.to(out_dtype)
        m = xq.shape[0]
        try:
            return torch._scaled_mm(xq, self.weight.t(), scale_a=xs, scale_b=self.weight_scale, bias=bias,
                                    out_dtype=out_dtype)
        except RuntimeError as exc:
            if m % 16:   # some builds want every dimension a multiple of 16: pad the tokens once and retry
                pad = 16 - m % 16
                xq = torch.cat([xq, xq.new_zeros(pad, xq.shape[1])])
                xs = torch.cat([xs, xs.new_ones(pad, 1)])
                try:
                    return torch._scaled_mm(xq, self.weight.t(), scale_a=xs, scale_b=self.weight_scale,
                                            bias=bias, out_dtype=out_dtype)[:m]
                except RuntimeError:
                    pass
            index = x2.device.index if x2.device.index is not None else torch.cuda.current_device()
            _scaled_mm_ok[index] = False
            log.warning("fp8 GEMMs: torch._scaled_mm failed on this GPU (%s); using the dequantised reference "
                        "matmul (same numerics, no speed-up)", exc)
            return None


def target_names(model: nn.Module) -> list:
    return [name for name, m in model.named_modules()
            if TARGET.match(name) and isinstance(m, (nn.Linear, Fp8Linear))]


def _shallow_copy(module: nn.Module) -> nn.Module:
    """A new module object sharing every tensor and child, with its own child/parameter/buffer tables."""
    new = copy.copy(module)
    new._modules = dict(module._modules)
    new._parameters = dict(module._parameters)
    new._buffers = dict(module._buffers)
    new.__dict__.pop("_compiled_call_impl", None)   # torch.compile bound the *original's* forward
    new.__dict__.pop("_vb_compiled", None)
    new._compiled_call_impl = None
    return new


def fp8_copy(model: nn.Module) -> tuple:
    """(copy of `model` with fp8 GEMM Linears, how many were converted). `model` is left untouched."""
    names = target_names(model)
    if not names:
        return model, 0
    modules = dict(model.named_modules())
    replacements = {n: Fp8GemmLinear.from_linear(modules[n]) for n in names}
    ancestors = {""}
    for n in names:
        parts = n.split(".")
        ancestors.update(".".join(parts[:i]) for i in range(1, len(parts)))

    def rebuild(module: nn.Module, prefix: str) -> nn.Module:
        if prefix in replacements:
            return replacements[prefix]
        if prefix not in ancestors:
            return module          # shared with the original
        new = _shallow_copy(module)
        for child_name, child in module._modules.items():
            if child is not None:
                new._modules[child_name] = rebuild(child, f"{prefix}.{child_name}" if prefix else child_name)
        return new

    return rebuild(model, ""), len(names)
