"""Our Triton attention kernels (wan/attention) against torch SDPA, run by Triton's CPU interpreter on tiny ragged
shapes (N not a multiple of the key/query tiles, 2–3 heads, head dim 64 and 128)."""
import math
import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before the kernels are defined: they run on CPU tensors

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("triton")

from vibeboard.wan.attention import triton_bf16, triton_fp8  # noqa: E402
from vibeboard.wan.attention.configs import KernelConfig  # noqa: E402

pytestmark = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available(),
                                reason="needs the Triton interpreter or a CUDA GPU")


def qkv(b, n, h, d, dtype=torch.bfloat16, seed=0, spread=1.0, k_offset=0.0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(b, n, h, d, generator=g) for _ in range(3))
    return (q * spread).to(dtype), (k * spread + k_offset).to(dtype), v.to(dtype)


def reference(q, k, v):
    """fp32 SDPA on the same (rounded) inputs, back in [B, N, H, D]."""
    return F.scaled_dot_product_attention(*(t.transpose(1, 2).float() for t in (q, k, v))).transpose(1, 2)


def rel(a, b):
    return float((a.float() - b.float()).norm() / b.float().norm())


# tiles small enough that every shape below has several full key blocks and a ragged tail
# (flat K/V descriptors read the next batch's keys in a ragged tail: B = 2 checks they are masked out)
SMALL = [KernelConfig(32, 16, 4, 1), KernelConfig(16, 32, 4, 1, lazy_rescale=True),
         KernelConfig(32, 16, 4, 1, pipeline_qk=True), KernelConfig(32, 32, 4, 1, warp_specialize=True),
         KernelConfig(32, 16, 4, 1, flat=False)]


@pytest.mark.parametrize("shape", [(1, 77, 2, 64), (2, 50, 3, 128)])
@pytest.mark.parametrize("config", SMALL, ids=lambda c: c.name)
def test_bf16_kernel_matches_sdpa_within_bf16_rounding(shape, config):
    q, k, v = qkv(*shape, spread=2.0)           # peaky softmax: the online max and rescaling matter
    out = triton_bf16.attention(q, k, v, config=config)
    ref = reference(q, k, v)
    assert out.shape == q.shape and out.dtype == torch.bfloat16
    # P is rounded to bf16 before P·V (as in FlashAttention / cuDNN): a couple of bf16 ulps at most
    assert (out.float() - ref).abs().max() <= 2 ** -6 * ref.abs().max()
    assert rel(out, ref) < 5e-3


@pytest.mark.parametrize("n", [10, 16, 20])
def test_pipelined_loop_with_no_one_or_two_full_key_blocks(n):
    q, k, v = qkv(2, n, 2, 64, seed=6, spread=2.0)
    ref = reference(q, k, v)
    for kernel in (triton_bf16.attention, triton_fp8.attention):
        out = kernel(q, k, v, config=KernelConfig(16, 16, 4, 1, pipeline_qk=True, lazy_rescale=True))
        assert rel(out, ref) < (5e-3 if kernel is triton_bf16.attention else 5e-2), (kernel, n)


def test_bf16_kernel_default_tiles_fp16_and_scale():
    q, k, v = qkv(1, 130, 2, 64, dtype=torch.float16, seed=1)   # 128-row tiles: one full block + a tail of 2
    out = triton_bf16.attention(q, k, v, scale=0.3)
    ref = F.scaled_dot_product_attention(*(t.transpose(1, 2).float() for t in (q, k, v)), scale=0.3)
    assert out.dtype == torch.float16
    assert rel(out, ref.transpose(1, 2)) < 2e-3


def test_bf16_kernel_reads_strided_views_without_copies():
    """diffusers' fused QKV hands over chunks of one [B, N, 3·H·D] tensor."""
    q, k, v = qkv(1, 40, 2, 64, seed=2)
    fused = torch.cat([t.flatten(2) for t in (q, k, v)], dim=-1)
    qs, ks, vs = (t.unflatten(2, (2, 64)) for t in fused.chunk(3, dim=-1))
    assert not qs.is_contiguous()
    out = triton_bf16.attention(qs, ks, vs, config=SMALL[0])
    torch.testing.assert_close(out, triton_bf16.attention(q, k, v, config=SMALL[0]), rtol=0, atol=0)


def test_kernels_refuse_what_they_do_not_support():
    q, k, v = qkv(1, 16, 2, 48)
    with pytest.raises(ValueError, match="head dim 48"):
        triton_bf16.attention(q, k, v)
    q, k, v = qkv(1, 16, 2, 64)
    with pytest.raises(ValueError, match="shapes do not match"):
        triton_bf16.attention(q, k[:, :, :1], v)
    with pytest.raises(ValueError, match="bf16 or fp16"):
        triton_bf16.attention(q.float(), k.float(), v.float())


@pytest.mark.parametrize("shape,flat,pipe", [((1, 77, 2, 64), True, False), ((2, 50, 3, 128), True, True),
                                             ((2, 50, 3, 64), False, False)])
def test_fp8_kernel_error_bounds(shape, flat, pipe):
    """Relative error on random data (the worst case: no dominant tokens). int8 Q·Kᵀ alone ≈ 1e-2; fp8 P and V
    add e4m3's 3-bit mantissa (≈ 2.5 % rms per element) — the GPU benchmark reports the figure at Wan's shapes."""
    q, k, v = qkv(*shape, seed=3)
    ref = reference(q, k, v)
    cfg = KernelConfig(32, 16, 4, 1, flat=flat, pipeline_qk=pipe)
    full = triton_fp8.attention(q, k, v, config=cfg)
    qk_only = triton_fp8.attention(q, k, v, config=cfg, v_fp8=False)
    assert full.shape == q.shape and full.dtype == q.dtype
    assert rel(qk_only, ref) < 2e-2
    assert rel(full, ref) < 5e-2
    assert rel(qk_only, ref) < rel(full, ref)


def test_fp8_kernel_smooths_k_so_a_shared_key_offset_costs_nothing():
    """softmax is invariant to adding one vector to every key; without smoothing, a large shared offset would
    eat the int8 range of K and the error would grow several-fold."""
    q, k, v = qkv(1, 64, 2, 64, seed=4)
    shifted = k + 30.0
    cfg = KernelConfig(16, 32, 4, 1)
    plain = triton_fp8.attention(q, k, v, config=cfg, v_fp8=False)
    offset = triton_fp8.attention(q, shifted, v, config=cfg, v_fp8=False)
    assert rel(offset, reference(q, shifted, v)) < 1.5 * rel(plain, reference(q, k, v)) + 2e-3


def test_fp8_kernel_smooths_v_so_a_shared_value_offset_costs_nothing():
    """Rows of P sum to 1, so V's channel mean goes around the fp8 product and is added back exactly (fp16 here:
    bf16's own rounding of outputs near 8 would hide the difference)."""
    q, k, v = qkv(1, 64, 2, 64, dtype=torch.float16, seed=8)
    cfg = KernelConfig(16, 32, 4, 1)
    plain = triton_fp8.attention(q, k, v, config=cfg)
    offset = triton_fp8.attention(q, k, v + 8.0, config=cfg)
    rounding = float((reference(q, k, v + 8.0).half().float() - reference(q, k, v + 8.0)).norm())
    err = float((offset.float() - reference(q, k, v + 8.0)).norm())
    assert err < 1.5 * float((plain.float() - reference(q, k, v)).norm()) + 2 * rounding


def test_fp8_quantisation_layout_and_scales():
    q, k, v = qkv(1, 37, 2, 64, seed=5, k_offset=3.0)
    q8, q_scale, k8, k_scale, v8, (v_scale, v_mean) = triton_fp8.quantize(q, k, v * 0.5 + 2.0, 1 / 8, 16)
    v = v * 0.5 + 2.0
    assert q8.dtype == k8.dtype == torch.int8 and q8.shape == q.shape
    assert q_scale.shape == (1, 2, 37) and k_scale.shape == (1, 2, 3) and v_scale.shape == (1, 2, 64)
    assert v8.dtype == torch.float8_e4m3fn and v8.shape == (1, 2, 64, 37)
    # Q: per-token scale with softmax scale·log2(e) folded in
    deq_q = q8.float() * q_scale.transpose(1, 2)[..., None]
    torch.testing.assert_close(deq_q, q.float() / 8 * 1.4426950408889634, atol=q_scale.max().item(), rtol=0)
    # K: mean over tokens removed, one scale per 16-key block
    smooth = k.float() - k.float().mean(dim=1, keepdim=True)
    deq_k = k8.float() * k_scale.repeat_interleave(16, dim=2)[..., :37].transpose(1, 2)[..., None]
    assert (deq_k - smooth).abs().max() <= k_scale.max() * 0.51
    assert k8.abs().max() == 127
    # V: channel mean removed, per-channel scale, transposed to [B, H, D, N]
    torch.testing.assert_close(v_mean, v.float().mean(dim=1))
    deq_v = v8.float() * v_scale[..., None] + v_mean[..., None]
    assert rel(deq_v - v_mean[..., None], v.float().permute(0, 2, 3, 1) - v_mean[..., None]) < 4e-2
    assert math.isclose(float(v8.float().abs().amax()), 448.0)
