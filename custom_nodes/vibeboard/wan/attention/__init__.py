"""Attention kernels of our own for the Wan DiT's self-attention (one kernel per file):
- `triton_bf16`: lossless bf16/fp16 FlashAttention-style forward for Hopper (TMA, HGMMA, pipelined Q·Kᵀ);
- `triton_fp8`: opt-in SageAttention-style 8-bit kernel (smoothed int8 Q·Kᵀ, fp8 or bf16 P·V), lossy, error reported.
`processor` installs them on the Wan blocks' self-attention (sampler setting attention = triton | fp8 | int8);
everything else keeps SDPA. `configs` holds what they share (descriptors, configs, the run-time tuner).
"""
