"""What the Triton attention kernels share: tensor descriptors over [B, N, H, D] tensors, the config list type and
a small run-time tuner.

Why our own tuner and not `triton.autotune`: Triton's tuner skips a config only on out-of-resources style errors; a
config whose lowering fails on this Triton/GPU (warp specialisation is young on sm_90) would take the whole call
down. Here every config is tried once per shape, a failing one is dropped with its error kept for the benchmark, and
the fastest survivor is remembered per (kernel, shape, dtype).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable, Optional, Sequence

import torch

LOG2E = 1.4426950408889634


def interpreting() -> bool:
    """Triton's CPU interpreter (TRITON_INTERPRET=1): kernels run on CPU tensors, slowly, for tests."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def triton_available() -> Optional[str]:
    """None when the kernels can run here, else the reason (shown to a user who asked for them explicitly)."""
    try:
        import triton  # noqa: F401
    except Exception as exc:  # pragma: no cover - depends on the machine
        return f"Triton is not importable ({exc}); pip install triton (it ships with CUDA builds of torch)"
    if interpreting():
        return None
    if not torch.cuda.is_available():
        return "the Triton attention kernels need a CUDA GPU (or TRITON_INTERPRET=1 for the slow CPU interpreter)"
    return None


def _interpreter_fixes():
    """Three bugs of Triton 3.6's CPU interpreter (compiled kernels are unaffected):
    - a scalar kernel argument is a 1-element array and a loop bound calls int() on it; numpy ≥ 2.4 refuses that;
    - tl.dot on bf16 multiplies the raw uint16 bit patterns (bf16 is stored as uint16): widen to fp32 first
      (exact: a bf16 product fits in fp32), as the tensor cores do;
    - fp32 → fp8 e4m3 truncates the mantissa; the GPU (cvt.rn.satfinite) rounds to nearest even and saturates at
      ±448, which torch's conversion after a clamp reproduces — so CPU tests see the GPU's fp8 error, not double."""
    try:
        from triton.runtime import interpreter
        original = interpreter._patch_lang_tensor
        builder = interpreter.InterpreterBuilder
        create_dot, fp_to_fp = builder.create_dot, builder.create_fp_to_fp
    except (ImportError, AttributeError):  # pragma: no cover - another Triton: its interpreter may not need them
        return
    if getattr(original, "_vb_fixed", False):
        return

    def patched(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    patched._vb_fixed = True
    interpreter._patch_lang_tensor = patched

    import numpy as np
    import triton.language as tl

    def widened(handle):
        if handle.dtype.scalar == tl.bfloat16:
            bits = handle.data.astype(np.uint32) << 16
            return interpreter.TensorHandle(bits.view(np.float32), tl.float32)
        return handle

    builder.create_dot = lambda self, a, b, d, *args: create_dot(self, widened(a), widened(b), d, *args)

    def rounded_fp8(self, src, dst_type, rounding_mode):
        if dst_type.scalar == tl.float8e4nv and src.dtype.scalar == tl.float32:
            x = torch.from_numpy(np.ascontiguousarray(np.clip(src.data, -448.0, 448.0)))
            return interpreter.TensorHandle(x.to(torch.float8_e4m3fn).view(torch.uint8).numpy(), tl.float8e4nv)
        return fp_to_fp(self, src, dst_type, rounding_mode)

    builder.create_fp_to_fp = rounded_fp8


if interpreting():
    _interpreter_fixes()


@dataclasses.dataclass(frozen=True)
class KernelConfig:
    """One point of a kernel's small search space. Names show up in the benchmark's table."""
    block_m: int
    block_n: int
    num_warps: int
    num_stages: int
    warp_specialize: bool = False
    lazy_rescale: bool = False     # FA4-style: rescale the accumulator only when the row max grows by > 2^8
    flat: bool = True              # Q/K/V through 2-D descriptors over [B·N, H·D] (else 4-D, reshaped in-kernel)
    pipeline_qk: bool = False      # issue Q·K_{j+1}ᵀ before the softmax of block j (FA3's intra-warpgroup overlap)

    @property
    def name(self) -> str:
        extra = ("-ws" if self.warp_specialize else "") + ("-lazy" if self.lazy_rescale else "")
        extra += ("" if self.flat else "-4d") + ("-pipe" if self.pipeline_qk else "")
        return f"m{self.block_m}n{self.block_n}w{self.num_warps}s{self.num_stages}{extra}"


def descriptor(t: torch.Tensor, block_tokens: int):
    """A TMA tensor descriptor over a [B, N, H, D] tensor that loads one head's [block_tokens, D] tile.
    Out-of-range tokens read as zeros and are not written, per batch and head (the kernels mask them in the
    softmax), so ragged N needs no padding."""
    from triton.tools.tensor_descriptor import TensorDescriptor
    return TensorDescriptor(t, list(t.shape), list(t.stride()), [1, block_tokens, 1, t.shape[-1]])


def flattenable(t: torch.Tensor) -> bool:
    """[B, N, H, D] whose batches follow each other row by row: a 2-D [B·N, H·D] view with the token stride."""
    return t.shape[0] == 1 or t.stride(0) == t.shape[1] * t.stride(1)


def tile_descriptor(t: torch.Tensor, block_tokens: int, flat: bool):
    """Q, K or V tiles of [block_tokens, D]. Flat: a 2-D descriptor over [B·N, H·D] (the tile at row b·N + n,
    column h·D): the copy engine's plain 2-D case, and the tile lands in shared memory exactly as the MMA reads it
    (Q then stays there as the A operand). A ragged tail then reads the next batch's first tokens (or zeros past
    the end): the kernels mask those keys' scores to -inf, and the output rows of such queries are never stored
    (the output goes through the 4-D descriptor). Not flat: the 4-D descriptor (zero fill per head)."""
    if not flat:
        return descriptor(t, block_tokens)
    from triton.tools.tensor_descriptor import TensorDescriptor
    b, n, h, d = t.shape
    return TensorDescriptor(t, [b * n, h * d], [t.stride(1), 1], [block_tokens, d])


def check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, who: str):
    """The kernels take diffusers' attention layout [B, N, H, D] (no transposes), last axis contiguous."""
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(f"{who}: q, k, v must be [B, N, H, D]; got {tuple(q.shape)}, {tuple(k.shape)}, "
                         f"{tuple(v.shape)}")
    if k.shape != v.shape or q.shape[0] != k.shape[0] or q.shape[2:] != k.shape[2:]:
        raise ValueError(f"{who}: shapes do not match: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    d = q.shape[-1]
    if d not in (64, 128):
        raise ValueError(f"{who}: head dim {d} is not supported (64 or 128)")
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.stride(-1) != 1:
            raise ValueError(f"{who}: {name} must be contiguous in its last axis")
        if any((s * t.element_size()) % 16 for s in t.stride()[:-1]):
            raise ValueError(f"{who}: {name} strides must be multiples of 16 bytes (TMA)")


class Tuner:
    """Pick the fastest config per key by timing each once (on CUDA); keep failures and timings for the bench."""

    def __init__(self, configs: Sequence[KernelConfig]):
        self.configs = list(configs)
        self.best: dict = {}
        self.timings: dict = {}     # key -> {config name: ms or error string}

    def choose(self, key, run: Callable[[KernelConfig], None]) -> KernelConfig:
        if key in self.best:
            return self.best[key]
        if interpreting() or len(self.configs) == 1:
            self.best[key] = self.configs[0]
            return self.configs[0]
        from triton.testing import do_bench
        results = {}
        for cfg in self.configs:
            try:
                results[cfg.name] = (do_bench(lambda: run(cfg), warmup=5, rep=20), cfg)
            except Exception as exc:  # a config this Triton/GPU cannot build: drop it, say why in the bench
                results[cfg.name] = (float("inf"), f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
                                     if str(exc) else type(exc).__name__)
        ok = [(ms, cfg) for ms, cfg in results.values() if isinstance(cfg, KernelConfig)]
        if not ok:
            errors = "; ".join(f"{n}: {c}" for n, (_, c) in results.items())
            raise RuntimeError(f"no attention kernel config compiled here: {errors}")
        self.timings[key] = {n: (ms if isinstance(c, KernelConfig) else c) for n, (ms, c) in results.items()}
        self.best[key] = min(ok, key=lambda r: r[0])[1]
        return self.best[key]
