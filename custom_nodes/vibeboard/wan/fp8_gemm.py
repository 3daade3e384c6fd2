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

_scaled_mm_ok: dict = {}      # device index → the `scaled_mm` variant that runs there, or False (reference path)


def quantize_rows(x: torch.Tensor):
    """[M, K] → (e4m3 [M, K], fp32 scales [M, 1]): one scale per row (token, or output channel of a weight)."""
    amax = x.detach().abs().amax(dim=1, keepdim=True).float().clamp(min=1e-12)
    scale = amax / E4M3_MAX
    return (x.float() / scale).to(E4M3), scale


_triton_quant = None


def _triton_kernel():
    """One Triton program per row: amax, then scale and cast, reading the row twice (from cache the second time).
    Eager torch needs five passes with fp32 temporaries, which would eat the fp8 GEMM's gain on every Linear."""
    global _triton_quant
    if _triton_quant is None:
        import triton
        import triton.language as tl

        @triton.jit
        def quant_rows_kernel(x_ptr, q_ptr, s_ptr, stride_x, stride_q, K: tl.constexpr, FP8_MAX: tl.constexpr,
                              BLOCK: tl.constexpr):
            row = tl.program_id(0).to(tl.int64)
            acc = tl.zeros([BLOCK], dtype=tl.float32)
            for k0 in range(0, K, BLOCK):
                offs = k0 + tl.arange(0, BLOCK)
                v = tl.load(x_ptr + row * stride_x + offs, mask=offs < K, other=0.0).to(tl.float32)
                acc = tl.maximum(acc, tl.abs(v))
            scale = tl.maximum(tl.max(acc, axis=0), 1e-12) / FP8_MAX
            tl.store(s_ptr + row, scale)
            for k0 in range(0, K, BLOCK):
                offs = k0 + tl.arange(0, BLOCK)
                v = tl.load(x_ptr + row * stride_x + offs, mask=offs < K, other=0.0).to(tl.float32)
                q = tl.math.div_rn(v, scale)   # IEEE division, as torch: the same fp8 codes
                tl.store(q_ptr + row * stride_q + offs, q.to(q_ptr.dtype.element_ty), mask=offs < K)

        _triton_quant = quant_rows_kernel
    return _triton_quant


def quantize_rows_fast(x: torch.Tensor):
    """`quantize_rows` in one Triton kernel on CUDA (inside torch.compile, or without Triton: the torch code,
    which inductor fuses by itself)."""
    if x.device.type != "cuda" or torch.compiler.is_compiling():
        return quantize_rows(x)
    try:
        kernel = _triton_kernel()
    except ImportError:
        return quantize_rows(x)
    x = x.contiguous()
    m, k = x.shape
    q = torch.empty((m, k), device=x.device, dtype=E4M3)
    scale = torch.empty((m, 1), device=x.device, dtype=torch.float32)
    block = min(4096, 1 << max(4, (k - 1).bit_length()))
    kernel[(m,)](x, q, scale, x.stride(0), q.stride(0), K=k, FP8_MAX=E4M3_MAX, BLOCK=block,
                 num_warps=4 if block <= 2048 else 8)
    return q, scale


def scaled_mm(xq, xs, wq, ws, bias, out_dtype, variant: str) -> torch.Tensor:
    """xq·wqᵀ with row scales xs [M,1] and column scales ws [1,N] (+ bias). variant: "bias" = bias fused into the
    GEMM's epilogue; "add" = added after; "pad" = tokens padded to a multiple of 16 (builds that want every
    dimension so). Fast accumulation: the rounding of e4m3 operands dominates its error."""
    m = xq.shape[0]
    if variant == "pad" and m % 16:
        xq = torch.cat([xq, xq.new_zeros(16 - m % 16, xq.shape[1])])
        xs = torch.cat([xs, xs.new_ones(16 - m % 16, 1)])
    y = torch._scaled_mm(xq, wq.t(), scale_a=xs, scale_b=ws, bias=bias if variant == "bias" else None,
                         out_dtype=out_dtype, use_fast_accum=True)[:m]
    return y if variant == "bias" or bias is None else y + bias


def _probe(device: torch.device):
    """The first `scaled_mm` variant this build runs (a tiny GEMM with 20 tokens, not a multiple of 16), or False."""
    error = None
    xq = torch.ones(20, 32, device=device).to(E4M3)
    wq = torch.ones(32, 32, device=device).to(E4M3)
    xs, ws = torch.ones(20, 1, device=device), torch.ones(1, 32, device=device)
    bias = torch.ones(32, device=device, dtype=torch.bfloat16)
    for variant in ("bias", "add", "pad"):
        try:
            y = scaled_mm(xq, xs, wq, ws, bias, torch.bfloat16, variant)
            if torch.allclose(y.float(), torch.full((20, 32), 33.0, device=device)):
                return variant
        except RuntimeError as exc:
            error = exc
    log.warning("fp8 GEMMs: torch._scaled_mm does not run on this GPU (%s); using the dequantised reference "
                "matmul (same numerics, no speed-up)", error)
    return False


def fused_variant(device: torch.device):
    """How the fused row-wise fp8 GEMM runs on `device` (a `scaled_mm` variant), or None: not CUDA, compute
    capability < 8.9 (before Ada), or the build refuses it. Probed once per device, eagerly (the sampler asks
    before any torch.compile'd forward, so compiled code only reads the answer)."""
    if device.type != "cuda" or not hasattr(torch, "_scaled_mm"):
        return None
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _scaled_mm_ok:
        ok = torch.cuda.get_device_capability(index) >= (8, 9)
        _scaled_mm_ok[index] = _probe(torch.device("cuda", index)) if ok else False
    return _scaled_mm_ok[index] or None


def scaled_mm_available(device: torch.device) -> bool:
    return fused_variant(device) is not None


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
        variant = fused_variant(x.device)
        if variant is None:
            y = self.reference(x2)
        else:
            out_dtype = x.dtype if x.dtype in (torch.bfloat16, torch.float16) else torch.bfloat16
            xq, xs = quantize_rows_fast(x2)
            bias = None if self.bias is None else self.bias.to(out_dtype)
            y = scaled_mm(xq, xs, self.weight, self.weight_scale, bias, out_dtype, variant)
        return y.to(x.dtype).reshape(*shape[:-1], self.out_features)

    def reference(self, x2: torch.Tensor) -> torch.Tensor:
        """The same quantisation as the fused op, multiplied in fp32 (CPU, older GPUs, tests)."""
        xq, xs = quantize_rows(x2)
        y = (xq.float() * xs) @ self.dequantized(torch.float32).t()
        return y if self.bias is None else y + self.bias.float()


def target_names(model: nn.Module) -> list:
    return [name for name, m in model.named_modules()
            if TARGET.match(name) and isinstance(m, (nn.Linear, Fp8Linear))]


def _shallow_copy(module: nn.Module) -> nn.Module:
    """A new module object sharing every tensor and child, with its own child/parameter/buffer tables."""
    new = copy.copy(module)
    for key, value in list(module.__dict__.items()):
        # its own tables: children, parameters, buffers and every hook table (a hook or processor installed on
        # the copy must not land on the cached model)
        if key.startswith("_") and isinstance(value, (dict, set)):
            new.__dict__[key] = type(value)(value)
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


_kept: dict = {}    # id(model) → (signature, copy, converted): copies kept for compiled blocks


def kept_fp8_copy(model: nn.Module, signature) -> tuple:
    """`fp8_copy`, kept between sampling runs while `signature` (the LoRAs merged into `model`) is unchanged:
    compiled blocks then see the same module objects each run and are not recompiled (dynamo's recompile limit
    would drop them to eager). One copy per model; it goes when the model object does. Its fp8 weights stay on
    the GPU between runs (≈ 1 byte per parameter) — used only with compile."""
    import weakref
    key = id(model)
    found = _kept.get(key)
    if found is not None and found[0] == signature:
        return found[1], found[2]
    copy, converted = fp8_copy(model)
    if found is None:
        weakref.finalize(model, _kept.pop, key, None)
    _kept[key] = (signature, copy, converted)
    return copy, converted

