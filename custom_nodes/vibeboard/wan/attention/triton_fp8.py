"""Opt-in 8-bit attention forward in Triton, SageAttention-style (lossy; its error is reported by the benchmark).

- K is smoothed: its mean over tokens (per batch, head, channel) is subtracted. softmax(q·kᵀ) does not change (the
  shift adds the same q·mean to a whole row of scores), but K loses its large shared component and quantises finely.
- Q (with the softmax scale·log2(e) folded in) is int8 with one scale per token; smoothed K is int8 with one scale
  per key block. S = Q·Kᵀ runs on the int8 tensor cores (int32, exact); the softmax then costs an integer add,
  one FMA and one exp2 per score (see `_block`).
- P (in [0, 1] after the online-softmax max, times 448 to use e4m3's range) and V are fp8 e4m3. V is smoothed too:
  its channel mean is taken out before quantising (one scale per channel for the rest) and added back after P·V,
  exactly, since each row of P sums to 1. Each P·V block product starts from a fresh fp32 accumulator that is added
  to the running one (Hopper's fp8 MMA accumulates with fewer bits; SageAttention 2's two-level accumulation). The
  row sums use fp32 P.
- V is written transposed ([B, H, D, N], tokens contiguous): Hopper's fp8 MMA wants its B operand K-major.
Quantisation runs in three small Triton kernels (one read of Q, K, V each, plus K's mean and V's mean and range).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import triton
import triton.language as tl

from .configs import LOG2E, KernelConfig, Tuner, check_qkv, descriptor, flattenable, tile_descriptor
from .triton_bf16 import _tile

P_SCALE = 448.0         # e4m3's largest finite value: V's channel scale maps max|V| there
CONFIGS = [
    KernelConfig(128, 128, 8, 2),
    KernelConfig(128, 128, 8, 3),
    KernelConfig(128, 128, 8, 2, pipeline_qk=True),
    KernelConfig(128, 64, 8, 3, pipeline_qk=True),
    KernelConfig(64, 128, 4, 2),            # 72 KB, 166 registers: two or three CTAs per SM
    KernelConfig(64, 128, 4, 2, pipeline_qk=True),  # 72 KB, 239 registers: two CTAs per SM
]


# --------------------------------------------------------------------------------------------- quantisation

@triton.jit
def _rows(x_ptr, n, heads, sb, sn, sh, HEAD_DIM: tl.constexpr, BLOCK: tl.constexpr):
    """This program's [BLOCK, HEAD_DIM] tile of one head of a [B, N, H, D] tensor (fp32, zeros past n): the tile,
    its element offsets (for a same-layout output), its row mask, rows, columns, and the (batch·heads + head)."""
    rows = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    bh = tl.program_id(1)
    cols = tl.arange(0, HEAD_DIM)
    ok = rows < n
    offs = (bh // heads).to(tl.int64) * sb + (bh % heads) * sh + rows[:, None].to(tl.int64) * sn + cols[None, :]
    x = tl.load(x_ptr + offs, mask=ok[:, None], other=0.0).to(tl.float32)
    return x, offs, ok, rows, cols, bh


@triton.jit
def _round(x):
    """Round half away from zero (the int8 cast truncates)."""
    return tl.where(x >= 0, x + 0.5, x - 0.5).to(tl.int32)


@triton.jit
def _quant_q(x_ptr, out_ptr, scale_ptr, n, heads, sb, sn, sh, scale,
             HEAD_DIM: tl.constexpr, BLOCK: tl.constexpr):
    """Q·scale → int8 with one scale per (token, head); scales stored [B, H, N]."""
    x, offs, ok, rows, cols, bh = _rows(x_ptr, n, heads, sb, sn, sh, HEAD_DIM, BLOCK)
    x = x * scale
    s = tl.maximum(tl.max(tl.abs(x), 1) / 127.0, 1e-30)
    tl.store(out_ptr + offs, _round(x / s[:, None]).to(tl.int8), mask=ok[:, None])
    tl.store(scale_ptr + bh.to(tl.int64) * n + rows, s, mask=ok)


@triton.jit
def _quant_k(x_ptr, mean_ptr, out_ptr, scale_ptr, n, heads, n_blocks, sb, sn, sh,
             HEAD_DIM: tl.constexpr, BLOCK: tl.constexpr):
    """(K - mean_tokens(K)) → int8 with one scale per (block of BLOCK keys, head); scales stored [B, H, blocks]."""
    x, offs, ok, rows, cols, bh = _rows(x_ptr, n, heads, sb, sn, sh, HEAD_DIM, BLOCK)
    mean = tl.load(mean_ptr + bh * HEAD_DIM + cols)
    x = tl.where(ok[:, None], x - mean[None, :], 0.0)
    s = tl.maximum(tl.max(tl.max(tl.abs(x), 1), 0) / 127.0, 1e-30)
    tl.store(out_ptr + offs, _round(x / s).to(tl.int8), mask=ok[:, None])
    tl.store(scale_ptr + bh * n_blocks + tl.program_id(0), s)


@triton.jit
def _quant_v_transposed(x_ptr, mean_ptr, scale_ptr, out_ptr, n, n_pad, heads, sb, sn, sh,
                        HEAD_DIM: tl.constexpr, BLOCK: tl.constexpr):
    """(V - channel mean) / channel scale → fp8 e4m3, written transposed as [B, H, D, N_pad] (tokens contiguous)."""
    x, offs, ok, rows, cols, bh = _rows(x_ptr, n, heads, sb, sn, sh, HEAD_DIM, BLOCK)
    x = x - tl.load(mean_ptr + bh * HEAD_DIM + cols)[None, :]
    v = (x / tl.load(scale_ptr + bh * HEAD_DIM + cols)[None, :]).to(tl.float8e4nv)
    out = out_ptr + bh.to(tl.int64) * HEAD_DIM * n_pad + cols[None, :] * n_pad + rows[:, None]
    tl.store(out, v, mask=ok[:, None])


def quantize(q, k, v, scale: float, block_n: int, v_fp8: bool = True):
    """Q int8 [B,N,H,D] + scales [B,H,N]; smoothed K int8 [B,N,H,D] + scales [B,H,blocks]; smoothed V fp8
    [B,H,D,N] (a view of [B,H,D,N_pad]) + (channel scales, channel means) [B,H,D] (with v_fp8; else V as it is,
    in bf16/fp16, and None)."""
    b, n_q, h, d = q.shape
    n_kv = k.shape[1]
    block = 64
    q8 = torch.empty(q.shape, dtype=torch.int8, device=q.device)
    q_scale = torch.empty((b, h, n_q), dtype=torch.float32, device=q.device)
    _quant_q[(triton.cdiv(n_q, block), b * h)](q, q8, q_scale, n_q, h, q.stride(0), q.stride(1), q.stride(2),
                                               scale * LOG2E, HEAD_DIM=d, BLOCK=block)
    k_mean = k.mean(dim=1, dtype=torch.float32).contiguous()                   # [B, H, D]
    n_blocks = triton.cdiv(n_kv, block_n)
    k8 = torch.empty(k.shape, dtype=torch.int8, device=k.device)
    k_scale = torch.empty((b, h, n_blocks), dtype=torch.float32, device=k.device)
    _quant_k[(n_blocks, b * h)](k, k_mean, k8, k_scale, n_kv, h, n_blocks, k.stride(0), k.stride(1), k.stride(2),
                                HEAD_DIM=d, BLOCK=block_n)
    if not v_fp8:
        return q8, q_scale, k8, k_scale, (v if v.dtype in (torch.bfloat16, torch.float16) else v.bfloat16()), None
    # V smoothed too: its channel mean is added back exactly after P·V (rows of P sum to 1), so e4m3's relative
    # error applies to the spread of V around its mean, not to a large shared offset
    v_mean = v.mean(dim=1, dtype=torch.float32)                                  # [B, H, D]
    v_min, v_max = torch.aminmax(v, dim=1)
    v_scale = torch.maximum(v_max.float() - v_mean, v_mean - v_min.float()) / P_SCALE
    v_scale = v_scale.clamp_min(1e-30).contiguous()
    v_mean = v_mean.contiguous()
    n_pad = triton.cdiv(n_kv, 16) * 16                                           # 16-byte row stride for TMA
    v8 = torch.zeros((b, h, d, n_pad), dtype=torch.float8_e4m3fn, device=v.device)
    _quant_v_transposed[(triton.cdiv(n_kv, block), b * h)](v, v_mean, v_scale, v8, n_kv, n_pad, h, v.stride(0),
                                                           v.stride(1), v.stride(2), HEAD_DIM=d, BLOCK=block)
    return q8, q_scale, k8, k_scale, v8[..., :n_kv], (v_scale, v_mean)


# --------------------------------------------------------------------------------------------- attention

@triton.jit
def _block(qk, row_scale, m_i, l_i, acc, v_desc, b, h, heads, start_n, n_kv, HEAD_DIM: tl.constexpr,
           BLOCK_N: tl.constexpr, V_FP8: tl.constexpr, FLAT: tl.constexpr, MASKED: tl.constexpr):
    """Online softmax of one int8 score tile and its P·V product, in as few ALU operations per score as possible
    (the 8-bit kernel is bound by them, not by the tensor cores):
    - int32 S + 0x4B400000 reinterpreted as fp32 is f = 1.5·2^23 + S exactly (|S| ≤ 127²·128 < 2^22): an integer
      add instead of the slow int→float conversion unit;
    - the score in log2 units is (f − 1.5·2^23)·r with r = q_scale·k_scale > 0, so the row max is taken on f and
      p·448 = 2^(f·r − bias) with bias = 1.5·2^23·r + m − log2(448) per row: one FMA and one exp2 per score.
      The factor 448 (e4m3's range, for the fp8 P) cancels against the row sums, which use the same p."""
    f = (qk + 0x4B400000).to(tl.float32, bitcast=True)
    if MASKED:  # keys past n_kv weigh nothing
        f = tl.where((start_n + tl.arange(0, BLOCK_N))[None, :] < n_kv, f, float("-inf"))
    m_new = tl.maximum(m_i, (tl.max(f, 1) - 12582912.0) * row_scale)
    alpha = tl.math.exp2(m_i - m_new)
    bias = 12582912.0 * row_scale + m_new - 8.807354922057604             # log2(448)
    p = tl.math.exp2(f * row_scale[:, None] - bias[:, None])
    l_i = l_i * alpha + tl.sum(p, 1)
    if V_FP8:  # Vᵀ as a flat [B·H·D, N] tensor: rows (b·H + h)·D ..; fresh fp32 accumulator per block
        vt = v_desc.load([(b * heads + h) * HEAD_DIM, start_n])
        acc = acc * alpha[:, None] + tl.dot(p.to(tl.float8e4nv), vt.T)
    else:
        v = _tile(v_desc, b, h, start_n, n_kv, BLOCK_N, HEAD_DIM, FLAT)
        acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None])
    return m_new, l_i, acc


@triton.jit
def _attn_fwd_8bit(q_desc, k_desc, v_desc, o_desc, q_scale_ptr, k_scale_ptr, v_scale_ptr, v_mean_ptr, n_q, n_kv,
                   heads,
                   n_blocks, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                   WARP_SPECIALIZE: tl.constexpr, V_FP8: tl.constexpr, FLAT: tl.constexpr,
                   PIPELINE_QK: tl.constexpr):
    start_m = tl.program_id(0) * BLOCK_M
    bh = tl.program_id(1)
    b = bh // heads
    h = bh % heads
    rows = start_m + tl.arange(0, BLOCK_M)
    q = _tile(q_desc, b, h, start_m, n_q, BLOCK_M, HEAD_DIM, FLAT)
    # rows past n_q get scale 1 (their output is never stored; 0 would make -inf·0 = NaN in masked columns)
    q_scale = tl.load(q_scale_ptr + bh.to(tl.int64) * n_q + rows, mask=rows < n_q, other=1.0)
    k_scales = k_scale_ptr + bh * n_blocks
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)

    n_full = (n_kv // BLOCK_N) * BLOCK_N
    if PIPELINE_QK:  # as in triton_bf16: Q·K_{j+1}ᵀ runs on the tensor cores during the softmax of block j
        if n_full > 0:
            qk = tl.dot(q, _tile(k_desc, b, h, 0, n_kv, BLOCK_N, HEAD_DIM, FLAT).T)
            for start_n in tl.range(BLOCK_N, n_full, BLOCK_N, warp_specialize=WARP_SPECIALIZE):
                qk_next = tl.dot(q, _tile(k_desc, b, h, start_n, n_kv, BLOCK_N, HEAD_DIM, FLAT).T)
                prev = start_n - BLOCK_N
                m_i, l_i, acc = _block(qk, q_scale * tl.load(k_scales + prev // BLOCK_N), m_i, l_i, acc, v_desc,
                                       b, h, heads, prev, n_kv, HEAD_DIM, BLOCK_N, V_FP8, FLAT, False)
                qk = qk_next
            prev = n_full - BLOCK_N
            m_i, l_i, acc = _block(qk, q_scale * tl.load(k_scales + prev // BLOCK_N), m_i, l_i, acc, v_desc,
                                   b, h, heads, prev, n_kv, HEAD_DIM, BLOCK_N, V_FP8, FLAT, False)
    else:
        for start_n in tl.range(0, n_full, BLOCK_N, warp_specialize=WARP_SPECIALIZE):
            qk = tl.dot(q, _tile(k_desc, b, h, start_n, n_kv, BLOCK_N, HEAD_DIM, FLAT).T)
            m_i, l_i, acc = _block(qk, q_scale * tl.load(k_scales + start_n // BLOCK_N), m_i, l_i, acc, v_desc,
                                   b, h, heads, start_n, n_kv, HEAD_DIM, BLOCK_N, V_FP8, FLAT, False)
    if n_full < n_kv:
        qk = tl.dot(q, _tile(k_desc, b, h, n_full, n_kv, BLOCK_N, HEAD_DIM, FLAT).T)
        m_i, l_i, acc = _block(qk, q_scale * tl.load(k_scales + n_full // BLOCK_N), m_i, l_i, acc, v_desc,
                               b, h, heads, n_full, n_kv, HEAD_DIM, BLOCK_N, V_FP8, FLAT, True)

    out = acc / l_i[:, None]
    if V_FP8:
        cols = bh * HEAD_DIM + tl.arange(0, HEAD_DIM)
        out = out * tl.load(v_scale_ptr + cols)[None, :] + tl.load(v_mean_ptr + cols)[None, :]
    o_desc.store([b, start_m, h, 0], out.to(o_desc.dtype).reshape(1, BLOCK_M, 1, HEAD_DIM))


TUNERS = {True: Tuner(CONFIGS), False: Tuner(CONFIGS)}


def launch(q, k, v, out, cfg: KernelConfig, scale: float, v_fp8: bool = True, quantized=None):
    """Quantise (unless given) and run one config; returns out."""
    from triton.tools.tensor_descriptor import TensorDescriptor
    b, n_q, h, d = q.shape
    n_kv = k.shape[1]
    q8, q_scale, k8, k_scale, v_q, v_stats = quantized or quantize(q, k, v, scale, cfg.block_n, v_fp8)
    v_scale, v_mean = v_stats if v_fp8 else (q_scale, q_scale)   # (unused pointers without fp8 V)
    flat = cfg.flat and (v_fp8 or flattenable(v_q))           # q8, k8 are contiguous
    if v_fp8:  # Vᵀ [B, H, D, N] viewed as [B·H·D, N]: a [D, BLOCK_N] tile per (batch, head)
        v_desc = TensorDescriptor(v_q, [b * h * d, n_kv], [v_q.stride(2), 1], [d, cfg.block_n])
    else:
        v_desc = tile_descriptor(v_q, cfg.block_n, flat)
    grid = (triton.cdiv(n_q, cfg.block_m), b * h)
    _attn_fwd_8bit[grid](tile_descriptor(q8, cfg.block_m, flat), tile_descriptor(k8, cfg.block_n, flat), v_desc,
                         descriptor(out, cfg.block_m), q_scale, k_scale, v_scale, v_mean, n_q, n_kv,
                         h, k_scale.shape[-1], HEAD_DIM=d, BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n,
                         WARP_SPECIALIZE=cfg.warp_specialize, V_FP8=v_fp8, FLAT=flat,
                         PIPELINE_QK=cfg.pipeline_qk,
                         num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    return out


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: Optional[float] = None,
              config: Optional[KernelConfig] = None, v_fp8: bool = True) -> torch.Tensor:
    """8-bit softmax(q kᵀ · scale) v for q, k, v in [B, N, H, D] (bf16/fp16, non-causal, no mask); returns
    [B, N_q, H, D] in q's dtype. Lossy (see the module notes): only on explicit request. v_fp8=False keeps P·V in
    bf16/fp16 (SageAttention 1: int8 Q·Kᵀ only; about half the error, less speed)."""
    check_qkv(q, k, v, "fp8 attention")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    out = torch.empty_like(q, memory_format=torch.contiguous_format)
    if config is None:
        key = (tuple(q.shape), k.shape[1], q.dtype, q.device.index)
        config = TUNERS[v_fp8].choose(key, lambda cfg: launch(q, k, v, out, cfg, scale, v_fp8))
    return launch(q, k, v, out, config, scale, v_fp8)
