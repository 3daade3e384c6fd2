"""wan/vae_kernels.py: the fused RMS norm (+ SiLU) Triton kernel against torch in fp32 (run by Triton's CPU interpreter
on tiny shapes, channels_last and channels-first, with/without bias and SiLU, into a buffer view), the fused_norm
and subpixel_upsample decode options of wan/vae_fast.py: the same function as diffusers' decode in fp32, within bf16
noise of the bf16-ops decode in bf16, the model left unchanged after."""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before the kernel is defined: it runs on CPU tensors

import pytest
import torch

pytest.importorskip("triton")

from vibeboard.models import tiny  # noqa: E402
from vibeboard.wan import vae_fast as V  # noqa: E402
from vibeboard.wan import vae_fused as VF  # noqa: E402
from vibeboard.wan import vae_kernels as K  # noqa: E402

pytestmark = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available(),
                                reason="needs the Triton interpreter or a CUDA GPU")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _inputs(c, shape=(3, 5, 7), fmt=torch.channels_last_3d, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, c, *shape, generator=g) * 3
    gamma = 1 + 0.5 * torch.randn(c, *([1] * len(shape)), generator=g)
    bias = torch.randn(c, *([1] * len(shape)), generator=g)
    to = dict(device=DEVICE, dtype=torch.bfloat16)
    return x.to(**to).contiguous(memory_format=fmt), gamma.to(**to), bias.to(**to)


def _truth(x, gamma, bias, silu):
    """fp32 torch on the same bf16 inputs: x / max(‖x‖, eps) · sqrt(C) · gamma + bias, SiLU."""
    y = torch.nn.functional.normalize(x.float(), dim=1) * x.shape[1] ** 0.5 * gamma.float()
    y = y + bias.float() if bias is not None else y
    return torch.nn.functional.silu(y) if silu else y


def _ulps(out, truth):
    """|out − truth| in bf16 ulps of truth (round-to-nearest gives ≤ 0.5; the interpreter's cast truncates: ≤ 1)."""
    ulp = torch.exp2(torch.floor(torch.log2(truth.abs().clamp_min(2 ** -100))) - 7)
    return float(((out.float() - truth) / ulp).abs().max())


@pytest.mark.parametrize("fmt", [torch.channels_last_3d, torch.contiguous_format], ids=["channels_last", "contiguous"])
@pytest.mark.parametrize("c", [8, 24])       # 24: not a power of two (masked channel lanes, as Wan's 96 and 384)
@pytest.mark.parametrize("bias,silu", [(False, False), (False, True), (True, True)])
def test_kernel_matches_fp32_torch_within_one_rounding(fmt, c, bias, silu):
    x, gamma, b = _inputs(c, fmt=fmt, seed=c)
    out = K.rms_norm(x, gamma, b if bias else None, silu=silu)
    assert out.dtype == torch.bfloat16 and out.shape == x.shape and out.stride() == x.stride()
    assert _ulps(out, _truth(x, gamma, b if bias else None, silu)) <= 1.0


def test_kernel_writes_into_a_view_of_a_larger_buffer_and_nowhere_else():
    for fmt in (torch.channels_last_3d, torch.contiguous_format):
        x, gamma, bias = _inputs(16, fmt=fmt, seed=3)
        buf = torch.full((2, 16, 5, 5, 7), 7.0, device=DEVICE, dtype=torch.bfloat16).contiguous(memory_format=fmt)
        K.rms_norm(x, gamma, bias, silu=True, out=buf[:, :, 2:])
        assert torch.equal(buf[:, :, 2:], K.rms_norm(x, gamma, bias, silu=True))
        assert (buf[:, :, :2] == 7).all()                      # the cached frames' slots are untouched


def test_kernel_on_4d_channels_last_fp32_and_strided_inputs():
    # the mid-block attention normalises [(b·t), C, H, W] channels_last frames, without SiLU
    x, gamma, _ = _inputs(12, shape=(6, 5), fmt=torch.channels_last)
    assert _ulps(K.rms_norm(x, gamma), _truth(x, gamma, None, False)) <= 1.0
    x32 = x.float()
    torch.testing.assert_close(K.rms_norm(x32, gamma), _truth(x, gamma, None, False), rtol=1e-5, atol=1e-5)
    strided = x32[..., ::2]                                     # spatial strides that do not merge: copied first
    torch.testing.assert_close(K.rms_norm(strided, gamma), _truth(strided, gamma, None, False), rtol=1e-5, atol=1e-5)
    zero = torch.zeros_like(x32)                                 # F.normalize's eps: zeros stay zeros, no NaN
    assert torch.equal(K.rms_norm(zero, gamma, silu=True), zero)


def _count_kernel_launches(monkeypatch):
    launches = []
    kernel = K._rms_norm_kernel

    class Spy:
        def __getitem__(self, grid):
            launches.append(grid)
            return kernel[grid]
    monkeypatch.setattr(K, "_rms_norm_kernel", Spy())
    return launches


@torch.no_grad()
def test_fused_decode_matches_the_reference_and_leaves_the_model_unchanged(monkeypatch):
    vae = tiny.build_vae(seed=5).to(DEVICE)
    z = torch.randn(1, 16, 3, 4, 4, generator=torch.Generator().manual_seed(6)).to(DEVICE)   # chunks: 1, 4, 4 frames
    ref = vae.decode(z).sample
    weights = {k: (v.data_ptr(), v.stride()) for k, v in vae.state_dict().items()}
    launches = _count_kernel_launches(monkeypatch)
    norms = sum(type(m).__name__ == "WanRMS_norm" for m in vae.decoder.modules())
    for options in (V.options_for("fused"), V.DecodeOptions(fused_norm=True)):   # channels_last and channels-first
        launches.clear()
        out = V.decode(vae, z, options)
        assert len(launches) == norms * z.shape[2]              # every norm of every chunk went through the kernel
        assert (out - ref).abs().max() < 1e-4                  # fp32: the same function, cache frames and all
    assert {k: (v.data_ptr(), v.stride()) for k, v in vae.state_dict().items()} == weights
    assert not any("forward" in m.__dict__ for m in vae.modules())
    assert torch.equal(vae.decode(z).sample, ref)


@torch.no_grad()
def test_fused_decode_in_bf16_is_within_bf16_noise_of_the_bf16_ops_decode():
    z = torch.randn(1, 16, 2, 4, 4, generator=torch.Generator().manual_seed(4)).to(DEVICE)
    truth = tiny.build_vae(seed=3).to(DEVICE).decode(z).sample
    vae16 = tiny.build_vae(seed=3).to(DEVICE, torch.bfloat16)
    z = z.bfloat16()
    fast = V.decode(vae16, z, V.options_for("channels_last")).float()
    fused = V.decode(vae16, z, V.options_for("fused")).float()
    rel = lambda a: float((a - truth).norm() / truth.norm())   # noqa: E731
    assert rel(fused) <= 1.25 * rel(fast)                      # no further from fp32 than the bf16 ops are
    assert float((fused - fast).norm() / fast.norm()) < 2 * rel(fast)


@torch.no_grad()
def test_fused_decode_of_the_wan22_vae():
    vae = tiny.build_vae(wan22=True).to(DEVICE)
    z = torch.randn(1, 48, 2, 2, 2, generator=torch.Generator().manual_seed(2)).to(DEVICE)
    assert (V.decode(vae, z, V.options_for("fused")) - vae.decode(z).sample).abs().max() < 1e-4


@pytest.mark.parametrize("fmt", [torch.channels_last, torch.contiguous_format], ids=["channels_last", "contiguous"])
def test_subpixel_conv_is_nearest_upsample_then_conv(fmt):
    g = torch.Generator().manual_seed(7)
    conv = torch.nn.Conv2d(6, 5, 3, padding=1)
    conv.weight.data = conv.weight.data.contiguous(memory_format=fmt)
    x = torch.randn(2, 6, 5, 7, generator=g)                   # odd sizes: the borders of every parity
    ref = conv(torch.nn.functional.interpolate(x, scale_factor=2.0, mode="nearest-exact"))
    out = VF._subpixel_forward(conv, {}, x)
    assert out.shape == ref.shape and out.is_contiguous(memory_format=fmt)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_subpixel_decode_never_upsamples_and_matches_the_reference(monkeypatch):
    vae = tiny.build_vae(seed=8)
    z = torch.randn(1, 16, 2, 4, 6, generator=torch.Generator().manual_seed(9))
    ref = vae.decode(z).sample

    def no_interpolate(*args, **kwargs):
        raise AssertionError("the 4x upsampled tensor was built")
    monkeypatch.setattr(torch.nn.functional, "interpolate", no_interpolate)
    for name in ("subpixel", "fused"):
        options = V.options_for(name)
        for opts in (options, options.replace(channels_last=False)):
            assert (V.decode(vae, z, opts) - ref).abs().max() < 1e-4, opts
    assert not any("forward" in m.__dict__ for m in vae.modules())


def test_fused_preset_by_environment(monkeypatch):
    monkeypatch.setenv("VIBEBOARD_VAE_DECODE", "fused")
    assert V.default_options(torch.device("cuda")) == V.FUSED
    assert V.FUSED == V.FAST.replace(fused_norm=True, subpixel_upsample=True)
    assert V.DEFAULT_CUDA == V.FUSED     # measured on the H200: 0.93 s vs 1.24 s, closer to fp32 (bench/README.md)
    assert not hasattr(V.DecodeOptions(), "compile")           # the broken torch.compile option is gone


_COMPILE_FOR_HOPPER = r'''
import json, sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from vibeboard.wan import vae_kernels as K
report = {}
for C, channels_fast in ((96, True), (384, True), (96, False)):
    block_s, block_c, warps = K._blocks(C, channels_fast)
    unit = ("x_sc", "o_sc") if channels_fast else ("x_ss", "o_ss")   # the stride of 1 the launcher specialises
    sig = {"x_ptr": "*bf16", "out_ptr": "*bf16", "gamma_ptr": "*bf16", "bias_ptr": "*bf16", "S": "i32",
           "x_sb": "i64", "x_sc": "i32", "x_ss": "i32", "o_sb": "i64", "o_sc": "i32", "o_ss": "i32",
           "scale": "fp32", "eps": "fp32", "C": "constexpr", "HAS_BIAS": "constexpr", "SILU": "constexpr",
           "BLOCK_S": "constexpr", "BLOCK_C": "constexpr"}
    consts = dict(C=C, HAS_BIAS=True, SILU=True, BLOCK_S=block_s, BLOCK_C=block_c)
    for name in unit:
        sig[name], consts[name] = "constexpr", 1
    names = list(sig)
    attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in names
             if sig[n] != "constexpr" and not sig[n].startswith("fp")}
    kernel = triton.compile(ASTSource(K._rms_norm_kernel, sig, consts, attrs), target=GPUTarget("cuda", 90, 32),
                            options={"num_warps": warps})
    ptx = kernel.asm["ptx"]
    report[f"{C}/{channels_fast}"] = {"ld_v4": "ld.global.v4" in ptx, "st_v4": "st.global.v4" in ptx}
print(json.dumps(report))
'''


def test_kernel_compiles_for_hopper_with_16_byte_accesses():
    """The interpreter does not compile: build the sm_90 PTX in a process without it (no GPU needed) and check the
    channels-contiguous loads and stores are vectorised (16-byte ld/st.global.v4), in both layouts."""
    import json
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(root, "custom_nodes"), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", _COMPILE_FOR_HOPPER], env=env, capture_output=True, text=True,
                          timeout=240)
    if proc.returncode and "ptxas" in proc.stderr and "not found" in proc.stderr.lower():
        pytest.skip("no ptxas in this Triton install")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report and all(r["ld_v4"] and r["st_v4"] for r in report.values()), report
