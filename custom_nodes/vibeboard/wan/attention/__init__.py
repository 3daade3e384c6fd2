"""Attention kernels of our own for the Wan DiT's self-attention (one kernel per file):
- `triton_bf16`: lossless bf16/fp16 FlashAttention-style forward for Hopper (TMA, pipelining, warp specialisation);
- `triton_fp8`: opt-in SageAttention-style 8-bit kernel (smoothed int8 Q·Kᵀ, fp8 P·V), lossy, error reported.
`processor` installs them on the Wan blocks' self-attention; everything else keeps SDPA.
"""
