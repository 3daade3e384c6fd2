"""Lossless bf16/fp16 attention forward for Hopper in Triton (FlashAttention-2/3 style).

Same arithmetic as FlashAttention and cuDNN's fused kernel: S = Q Kᵀ accumulated in fp32, online softmax in fp32
with exp2 (the 1/sqrt(d)·log2(e) scale folded into one multiply-add), P rounded to the input dtype for P·V, fp32
accumulator, one division at the end. So the output matches SDPA within the input dtype's rounding.

Hopper specifics (each checked in the sm_90 SASS: `python bench/attention_kernels.py --sass`):
- Q/K/V arrive through TMA tensor descriptors over diffusers' [B, N, H, D] layout, no transposes. Flat 2-D tiles
  ([B·N, H·D], see configs.tile_descriptor) land in shared memory as the wgmma reads them, so Q stays there as the
  A operand (186 registers instead of 218 with 4-D tiles reshaped through registers); O is stored through a 4-D
  descriptor, which clips rows past N per (batch, head).
- Both products are HGMMA (warpgroup MMA, bf16 → fp32); loads are multi-stage (`num_stages`) TMA + mbarriers.
- `pipeline_qk` issues Q·K_{j+1}ᵀ before the softmax of block j (FlashAttention-3's intra-warpgroup overlap,
  written as a software pipeline): the SASS then interleaves the exp2s with the in-flight HGMMAs.
- `lazy_rescale` (FlashAttention-4's trick) skips the accumulator rescale unless a row max grows by more than 2^8;
  the result is the same (numerator and denominator share the stale max).
- The hot loop carries no masks: full key blocks first, the ragged tail once after.
- `warp_specialize` is passed to `tl.range`, but Triton 3.6's Hopper pass leaves this loop as it is (the SASS is
  identical, no producer warps or setmaxnreg), so no config turns it on; it is kept for a later Triton.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import triton
import triton.language as tl

from .configs import LOG2E, KernelConfig, Tuner, check_qkv, descriptor, flattenable, tile_descriptor

# Chosen for Wan's shapes (d = 128, N ≈ 32k, 12 or 40 heads) on an H200: 128-row query tiles (one warp group
# per 64 rows), 64- or 128-key tiles; shared memory for Q + stages × (K + V) stays under 227 KB; every config
# compiles to HGMMA without register spills (bench --sass). The tuner times them once per shape.
CONFIGS = [
    KernelConfig(128, 128, 8, 2),
    KernelConfig(128, 128, 8, 3),
    KernelConfig(128, 128, 8, 2, pipeline_qk=True),
    KernelConfig(128, 64, 8, 3, pipeline_qk=True),
    KernelConfig(64, 64, 4, 2),             # 80 KB, 138 registers: two CTAs per SM interleave on their own
    KernelConfig(64, 64, 4, 2, pipeline_qk=True),   # 96 KB, 167 registers: the same, pipelined
    KernelConfig(128, 128, 8, 2, lazy_rescale=True),
    KernelConfig(128, 128, 8, 2, lazy_rescale=True, pipeline_qk=True),
    KernelConfig(128, 128, 8, 2, flat=False),
]


@triton.jit
def _softmax_step(qk, m_i, l_i, acc, qk_scale, LAZY: tl.constexpr):
    """One online-softmax update for a [BLOCK_M, BLOCK_N] score tile; returns p (fp32), the new m, l and the
    rescaled accumulator."""
    m_blk = tl.max(qk, 1) * qk_scale
    m_new = tl.maximum(m_i, m_blk)
    if LAZY:
        # rows keep their stale max while the new one is within 2^8 of it (p ≤ 256 stays exact enough in fp32)
        if tl.max(m_new - m_i, 0) > 8.0:
            alpha = tl.math.exp2(m_i - m_new)
            acc = acc * alpha[:, None]
            l_i = l_i * alpha
            m_i = m_new
        p = tl.math.exp2(qk * qk_scale - m_i[:, None])
        l_i = l_i + tl.sum(p, 1)
    else:
        alpha = tl.math.exp2(m_i - m_new)
        p = tl.math.exp2(qk * qk_scale - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None]
        m_i = m_new
    return p, m_i, l_i, acc


@triton.jit
def _tile(desc, b, h, start, n, BLOCK: tl.constexpr, HEAD_DIM: tl.constexpr, FLAT: tl.constexpr):
    """One [BLOCK, HEAD_DIM] tile of head h from token `start` (see configs.flat_descriptor)."""
    if FLAT:
        return desc.load([b * n + start, h * HEAD_DIM])
    else:
        return desc.load([b, start, h, 0]).reshape(BLOCK, HEAD_DIM)


@triton.jit
def _pv(p, acc, v_desc, b, h, start_n, n_kv, BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr, FLAT: tl.constexpr):
    v = _tile(v_desc, b, h, start_n, n_kv, BLOCK_N, HEAD_DIM, FLAT)
    return tl.dot(p.to(v.dtype), v, acc)


@triton.jit
def _attn_fwd(q_desc, k_desc, v_desc, o_desc, n_q, n_kv, heads, qk_scale,
              HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
              WARP_SPECIALIZE: tl.constexpr, LAZY: tl.constexpr, FLAT: tl.constexpr, PIPELINE_QK: tl.constexpr):
    start_m = tl.program_id(0) * BLOCK_M
    bh = tl.program_id(1)
    b = bh // heads
    h = bh % heads
    # flat Q stays in shared memory as the MMA's A operand (a 4-D tile is reshaped through registers)
    q = _tile(q_desc, b, h, start_m, n_q, BLOCK_M, HEAD_DIM, FLAT)
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)

    n_full = (n_kv // BLOCK_N) * BLOCK_N
    if PIPELINE_QK:
        # S_{j+1} = Q·K_{j+1}ᵀ is issued before the softmax of S_j, so the tensor cores work while the exp2 units
        # do (FlashAttention-3's intra-warpgroup overlap, written out as a software pipeline).
        if n_full > 0:
            qk = tl.dot(q, _tile(k_desc, b, h, 0, n_kv, BLOCK_N, HEAD_DIM, FLAT).T)
            for start_n in tl.range(BLOCK_N, n_full, BLOCK_N, warp_specialize=WARP_SPECIALIZE):
                qk_next = tl.dot(q, _tile(k_desc, b, h, start_n, n_kv, BLOCK_N, HEAD_DIM, FLAT).T)
                p, m_i, l_i, acc = _softmax_step(qk, m_i, l_i, acc, qk_scale, LAZY)
                acc = _pv(p, acc, v_desc, b, h, start_n - BLOCK_N, n_kv, BLOCK_N, HEAD_DIM, FLAT)
                qk = qk_next
            p, m_i, l_i, acc = _softmax_step(qk, m_i, l_i, acc, qk_scale, LAZY)
            acc = _pv(p, acc, v_desc, b, h, n_full - BLOCK_N, n_kv, BLOCK_N, HEAD_DIM, FLAT)
    else:
        for start_n in tl.range(0, n_full, BLOCK_N, warp_specialize=WARP_SPECIALIZE):
            qk = tl.dot(q, _tile(k_desc, b, h, start_n, n_kv, BLOCK_N, HEAD_DIM, FLAT).T)
            p, m_i, l_i, acc = _softmax_step(qk, m_i, l_i, acc, qk_scale, LAZY)
            acc = _pv(p, acc, v_desc, b, h, start_n, n_kv, BLOCK_N, HEAD_DIM, FLAT)
    if n_full < n_kv:  # the ragged tail: keys past n_kv (zeros, or the next batch's) weigh nothing
        qk = tl.dot(q, _tile(k_desc, b, h, n_full, n_kv, BLOCK_N, HEAD_DIM, FLAT).T)
        cols = n_full + tl.arange(0, BLOCK_N)
        qk = tl.where(cols[None, :] < n_kv, qk, float("-inf"))
        p, m_i, l_i, acc = _softmax_step(qk, m_i, l_i, acc, qk_scale, LAZY)
        acc = _pv(p, acc, v_desc, b, h, n_full, n_kv, BLOCK_N, HEAD_DIM, FLAT)

    out = acc / l_i[:, None]
    # 4-D store: rows past n_q are clipped per (batch, head), never written into the next batch
    o_desc.store([b, start_m, h, 0], out.to(q.dtype).reshape(1, BLOCK_M, 1, HEAD_DIM))


TUNER = Tuner(CONFIGS)


def launch(q, k, v, out, cfg: KernelConfig, scale: float):
    """Run one config (the benchmark times each of them through this)."""
    b, n_q, h, d = q.shape
    flat = cfg.flat and flattenable(q) and flattenable(k) and flattenable(v)
    grid = (triton.cdiv(n_q, cfg.block_m), b * h)
    _attn_fwd[grid](tile_descriptor(q, cfg.block_m, flat), tile_descriptor(k, cfg.block_n, flat),
                    tile_descriptor(v, cfg.block_n, flat), descriptor(out, cfg.block_m), n_q, k.shape[1], h,
                    scale * LOG2E, HEAD_DIM=d, BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n,
                    WARP_SPECIALIZE=cfg.warp_specialize, LAZY=cfg.lazy_rescale, FLAT=flat,
                    PIPELINE_QK=cfg.pipeline_qk,
                    num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    return out


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: Optional[float] = None,
              config: Optional[KernelConfig] = None) -> torch.Tensor:
    """softmax(q kᵀ · scale) v for q, k, v in [B, N, H, D] (bf16 or fp16, non-causal, no mask); returns
    [B, N_q, H, D] in q's dtype. `config` forces one config (tests, benchmark); otherwise the fastest is tuned once
    per shape."""
    check_qkv(q, k, v, "triton attention")
    if q.dtype not in (torch.bfloat16, torch.float16) or k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError(f"triton attention: q, k, v must all be bf16 or fp16 (got {q.dtype}, {k.dtype}, {v.dtype})")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    out = torch.empty_like(q, memory_format=torch.contiguous_format)
    if config is None:
        key = (tuple(q.shape), k.shape[1], q.dtype, q.device.index)
        config = TUNER.choose(key, lambda cfg: launch(q, k, v, out, cfg, scale))
    return launch(q, k, v, out, config, scale)
