"""Fused RMS norm (+ SiLU) over the channel dim of the Wan VAE's activations, in one read and one write (Triton).

diffusers' `WanRMS_norm` is `F.normalize(x.float(), dim=1).to(dtype) * sqrt(C) * gamma + bias`, and the residual
blocks and the decoder head follow it with SiLU: in bf16 that is an fp32 copy, a reduction, a division, a cast, two
multiplies, an add and the SiLU — each a full pass over a tensor of up to 96 ch × 4 frames × 480 × 832 (≈ 307 MB).
`rms_norm` does all of it in one pass: each program loads a block of positions with all their channels, sums the
squares in fp32, scales by sqrt(C)·gamma / max(‖x‖, 1e-12) (F.normalize's eps), adds the bias, applies SiLU, rounds
once to the output dtype and stores. It is at least as accurate as diffusers' bf16 path (which rounds after the
normalisation, after each multiply and after the SiLU).

Layouts: any [B, C, *spatial] tensor whose spatial dims flatten to one stride — channels_last(_3d) (channels
contiguous: each row of the tile is one position's channels) and contiguous (channels-first: each column is a run of
positions). The output may be a view into a larger buffer with the same kind of layout (the decoder writes the
normalised frames straight behind the causal conv's cached frames, see `vae_fast._norm_silu_conv`). Other strides
are copied first. Without CUDA the same function runs in torch (or in Triton's interpreter when TRITON_INTERPRET=1,
which the tests use to check the kernel).
"""
from __future__ import annotations

import os
from contextlib import nullcontext
from typing import Optional

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - triton ships with CUDA torch; CPU-only installs use the torch path
    triton = None

EPS = 1e-12   # F.normalize's default
# Triton picks interpreter-or-GPU when a kernel is defined: CPU tensors may only go to a kernel defined interpreted
_INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"


if triton is not None:
    @triton.jit
    def _rms_norm_kernel(x_ptr, out_ptr, gamma_ptr, bias_ptr, S,
                         x_sb, x_sc, x_ss, o_sb, o_sc, o_ss, scale, eps,
                         C: tl.constexpr, HAS_BIAS: tl.constexpr, SILU: tl.constexpr,
                         BLOCK_S: tl.constexpr, BLOCK_C: tl.constexpr):
        pid_s = tl.program_id(0)
        b = tl.program_id(1)
        s0 = pid_s * BLOCK_S
        # 64-bit base offsets (a decoder buffer holds > 2^31 elements at batch > 1); in-tile offsets stay 32-bit so
        # the contiguity analysis sees unit strides (Triton specialises a stride of 1) and vectorises the accesses
        x_ptr += b.to(tl.int64) * x_sb + s0.to(tl.int64) * x_ss
        out_ptr += b.to(tl.int64) * o_sb + s0.to(tl.int64) * o_ss
        rows = tl.arange(0, BLOCK_S)
        cols = tl.arange(0, BLOCK_C)
        mask = (rows[:, None] < S - s0) & (cols[None, :] < C)
        x = tl.load(x_ptr + rows[:, None] * x_ss + cols[None, :] * x_sc, mask=mask, other=0.0).to(tl.float32)
        factor = scale / tl.maximum(tl.sqrt(tl.sum(x * x, axis=1)), eps)
        gamma = tl.load(gamma_ptr + cols, mask=cols < C, other=0.0).to(tl.float32)
        y = x * factor[:, None] * gamma[None, :]
        if HAS_BIAS:
            y += tl.load(bias_ptr + cols, mask=cols < C, other=0.0).to(tl.float32)[None, :]
        if SILU:
            y = y * tl.sigmoid(y)
        tl.store(out_ptr + rows[:, None] * o_ss + cols[None, :] * o_sc, y.to(out_ptr.dtype.element_ty), mask=mask)


def _flat(t: torch.Tensor) -> Optional[torch.Tensor]:
    """[B, C, *spatial] as a [B, C, S] view, or None where the spatial strides do not merge."""
    try:
        return t.view(t.shape[0], t.shape[1], -1)
    except RuntimeError:
        return None


def use_triton(x: torch.Tensor) -> bool:
    return triton is not None and (x.is_cuda or (x.device.type == "cpu" and _INTERPRETED))


def _blocks(C: int, channels_fast: bool) -> tuple:
    block_c = triton.next_power_of_2(C)
    # ≈ 8k elements per program (32 fp32 values per thread at 8 warps): enough bytes in flight per SM to reach HBM
    # bandwidth without spilling. Channels-first tiles need ≥ 32 positions for 64-byte runs along each channel.
    block_s = max(8192 // block_c, 32 if not channels_fast else 1, 1)
    warps = 8 if block_s * block_c >= 8192 else 4
    return block_s, block_c, (16 if block_s * block_c > 16384 else warps)


def rms_norm_reference(x: torch.Tensor, gamma: torch.Tensor, bias, scale: float, silu: bool) -> torch.Tensor:
    """The same function in torch ops (fp32 throughout, one rounding at the end): the path without Triton."""
    shape = (1, -1) + (1,) * (x.dim() - 2)
    y = x.float()
    y = y * (scale / torch.linalg.vector_norm(y, dim=1, keepdim=True).clamp_min(EPS))
    y = y * gamma.reshape(shape).float()
    if isinstance(bias, torch.Tensor):
        y = y + bias.reshape(shape).float()
    if silu:
        y = torch.nn.functional.silu(y)
    return y.to(x.dtype)


def rms_norm(x: torch.Tensor, gamma: torch.Tensor, bias=None, scale: Optional[float] = None, silu: bool = False,
             out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """RMS norm over dim 1 of x [B, C, ...]: x / max(‖x‖₂, 1e-12) · scale · gamma (+ bias), then SiLU if asked.
    `scale` defaults to sqrt(C) (WanRMS_norm's); gamma and bias hold C values (any shape); `out` (same shape, may be
    a strided view into a larger buffer) receives the result, else a tensor in x's memory format is returned."""
    C = x.shape[1]
    scale = float(C ** 0.5 if scale is None else scale)
    has_bias = isinstance(bias, torch.Tensor)
    if out is not None and out.shape != x.shape:
        raise ValueError(f"rms_norm: out has shape {tuple(out.shape)}, x {tuple(x.shape)}")
    if not use_triton(x) or x.dim() < 3 or x.numel() == 0:
        y = rms_norm_reference(x, gamma, bias, scale, silu)
        return y if out is None else out.copy_(y)
    x3 = _flat(x)
    if x3 is None:
        x = x.contiguous()
        x3 = _flat(x)
    result = torch.empty_like(x) if out is None else out
    o3 = _flat(result)
    if o3 is None:   # an output view whose strides do not merge: compute into a temporary, then copy
        return result.copy_(rms_norm(x, gamma, bias, scale, silu))
    gamma = gamma.reshape(-1)
    bias_flat = bias.reshape(-1) if has_bias else gamma   # unread without HAS_BIAS
    S = x3.shape[2]
    block_s, block_c, warps = _blocks(C, channels_fast=x3.stride(1) == 1)
    grid = (triton.cdiv(S, block_s), x3.shape[0])
    with torch.cuda.device(x.device) if x.is_cuda else nullcontext():
        _rms_norm_kernel[grid](x3, o3, gamma, bias_flat, S, *x3.stride(), *o3.stride(), scale, EPS,
                               C=C, HAS_BIAS=has_bias, SILU=silu, BLOCK_S=block_s, BLOCK_C=block_c,
                               num_warps=warps)
    return result

