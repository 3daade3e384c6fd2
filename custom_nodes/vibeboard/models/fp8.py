"""fp8 weight storage: Linear weights kept as float8 (half the bytes of bf16), upcast at the matmul.

Lossy (fp8 rounding of weights), so never a default: an option for fitting 14B models into smaller GPUs.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

FP8_MAX = {torch.float8_e4m3fn: 448.0, torch.float8_e5m2: 57344.0}


class Fp8Linear(nn.Module):
    """Drop-in for nn.Linear: weight stored as fp8 with a per-tensor scale; computes in the input dtype."""

    def __init__(self, linear: nn.Linear, fp8_dtype=torch.float8_e4m3fn):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        w = linear.weight.data.float()
        scale = (w.abs().max() / FP8_MAX[fp8_dtype]).clamp(min=1e-12)
        self.weight = nn.Parameter((w / scale).to(fp8_dtype), requires_grad=False)
        self.register_buffer("scale_weight", scale.reshape(1))
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.data.clone(), requires_grad=False)

    def dequantized(self, dtype) -> torch.Tensor:
        return self.weight.to(dtype) * self.scale_weight.to(dtype)

    def forward(self, x):
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.dequantized(x.dtype), bias)


def convert_linears_to_fp8(model: nn.Module, fp8_dtype=torch.float8_e4m3fn, skip=()) -> int:
    """Replace every nn.Linear outside `skip` (name fragments) in place; returns how many were converted."""
    count = 0
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if type(child) is nn.Linear and not any(s in full for s in skip):
                setattr(module, child_name, Fp8Linear(child, fp8_dtype))
                count += 1
    return count
