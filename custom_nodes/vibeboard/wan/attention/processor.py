"""Our attention kernels on the Wan blocks' self-attention, as diffusers attention processors.

Only plain self-attention (attn1 with the stock `WanAttnProcessor`, no mask) runs the kernel: cross-attention,
masked calls and any attention another processor owns (regional prompts, triplet attention, ...) keep SDPA. The
kernels are registered as torch custom ops so `torch.compile`d blocks call them as opaque nodes.
"""
from __future__ import annotations

import contextlib
from typing import Optional

import torch

from .configs import interpreting, triton_available

# attention setting -> (kernel, what it is); "triton" is lossless, the others are opt-in and lossy
KERNELS = {
    "triton": "Triton bf16 FlashAttention-style kernel for Hopper (lossless: within bf16 rounding of SDPA)",
    "fp8": "8-bit SageAttention-style kernel: smoothed int8 Q·Kᵀ, fp8 P·V (lossy, ≈3e-2 relative on random data)",
    "int8": "8-bit Q·Kᵀ only (SageAttention 1): smoothed int8 Q·Kᵀ, bf16 P·V (lossy, ≈1e-2 relative)",
}


@torch.library.custom_op("vibeboard::wan_attention", mutates_args=())
def _kernel_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kind: str) -> torch.Tensor:
    # Triton launches on the current device: make it q's (a model on cuda:1 while cuda:0 is current)
    with torch.cuda.device(q.device) if q.is_cuda else contextlib.nullcontext():
        if kind == "triton":
            from . import triton_bf16
            return triton_bf16.attention(q, k, v)
        from . import triton_fp8
        return triton_fp8.attention(q, k, v, v_fp8=(kind == "fp8"))


@_kernel_op.register_fake
def _(q, k, v, kind):
    return torch.empty_like(q, memory_format=torch.contiguous_format)


def run_kernel(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kind: str) -> torch.Tensor:
    """softmax(q kᵀ / sqrt(d)) v with our kernel `kind`; q, k, v [B, N, H, D] → [B, N, H, D]."""
    return _kernel_op(q, k, v, kind)


def unavailable_reason(kind: str, device: torch.device) -> Optional[str]:
    """Why `kind` cannot run on `device` (None when it can)."""
    if kind not in KERNELS:
        return f"unknown attention kernel {kind!r} (choose one of {sorted(KERNELS)})"
    reason = triton_available()
    if reason:
        return reason
    if torch.device(device).type != "cuda" and not interpreting():
        return f"the {kind!r} attention kernel runs on a CUDA GPU; this model is on {device}"
    return None


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Wan's RoPE on [B, N, H, D]: channel pairs (2i, 2i+1) rotated by angle i; diffusers' cos/sin tables repeat
    each angle twice. Computed in the tables' dtype (fp32) and rounded once, as the stock processor does."""
    even, odd = x.unflatten(-1, (-1, 2)).unbind(-1)
    c, s = cos[..., 0::2], sin[..., 1::2]
    return torch.stack((even * c - odd * s, even * s + odd * c), dim=-1).flatten(-2).type_as(x)


class WanKernelSelfAttention:
    """attn1 processor: Wan self-attention through our kernel; anything else goes to the processor it replaced.
    Plain attributes only, set once, so compiled blocks trace it without graph breaks."""

    def __init__(self, kind: str, fallback):
        from diffusers.models.transformers.transformer_wan import _get_qkv_projections
        self.kind = kind
        self.fallback = fallback
        self.projections = _get_qkv_projections      # diffusers' own (handles fused QKV)
        self.allow_cpu = interpreting()               # tests: the CPU interpreter runs the kernels

    def fits(self, attn, hidden_states: torch.Tensor) -> bool:
        return (hidden_states.dtype in (torch.bfloat16, torch.float16) and attn.inner_dim // attn.heads in (64, 128)
                and (hidden_states.is_cuda or self.allow_cpu))

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None,
                 **kwargs):
        if (encoder_hidden_states is not None or attention_mask is not None or kwargs
                or attn.add_k_proj is not None or not self.fits(attn, hidden_states)):
            return self.fallback(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb, **kwargs)
        q, k, v = self.projections(attn, hidden_states, None)
        q, k = attn.norm_q(q), attn.norm_k(k)
        q, k, v = (t.unflatten(2, (attn.heads, -1)) for t in (q, k, v))
        if rotary_emb is not None:
            q, k = _rope(q, *rotary_emb), _rope(k, *rotary_emb)
        out = run_kernel(q, k, v, self.kind).flatten(2, 3).type_as(q)
        return attn.to_out[1](attn.to_out[0](out))


def self_attention_modules(model):
    """Every Wan block's self-attention (main and VACE blocks)."""
    for name in ("blocks", "vace_blocks"):
        for block in getattr(model, name, None) or []:
            if hasattr(block, "attn1"):
                yield block.attn1


def _processor_for(module, kind: str) -> WanKernelSelfAttention:
    """One processor object per (module, kind), reused by every sampling run: compiled blocks then see the same
    object each time and do not recompile per run (dynamo's recompile limit would drop them to eager)."""
    cache = getattr(module, "_vb_kernel_processors", None)
    if cache is None:
        cache = module._vb_kernel_processors = {}
    proc = cache.get(kind)
    if proc is None or proc.fallback is not module.processor:
        proc = cache[kind] = WanKernelSelfAttention(kind, module.processor)
    return proc


@contextlib.contextmanager
def kernel_attention(model, kind: str, device):
    """Within the block, the stock self-attention of `model`'s Wan blocks runs kernel `kind`. Raises a clear
    error when the kernel cannot run here (the user asked for it explicitly)."""
    reason = unavailable_reason(kind, device)
    if reason:
        raise RuntimeError(f"attention={kind!r}: {reason}. Use attention='auto' (cuDNN SDPA) instead.")
    from diffusers.models.transformers.transformer_wan import WanAttnProcessor
    saved = []
    try:
        for module in self_attention_modules(model):
            if type(module.processor) is WanAttnProcessor:  # another processor owns it: leave it alone
                saved.append((module, module.processor))
                module.set_processor(_processor_for(module, kind))
        yield [m.processor for m, _ in saved]
    finally:
        for module, processor in saved:
            module.set_processor(processor)
