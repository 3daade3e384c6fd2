"""bench/attention_kernels.py --quick: the attention kernel benchmark still runs end to end (CPU, interpreter)."""
import importlib.util
import json
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest

pytest.importorskip("triton")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_attention_bench_quick_times_every_kernel_and_reports_errors(tmp_path):
    spec = importlib.util.spec_from_file_location("attention_kernels", os.path.join(ROOT, "bench",
                                                                                    "attention_kernels.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.main(["--quick", "--json", str(tmp_path / "out.json")])
    by_name = {r["kernel"]: r for r in rows}
    assert any(n.startswith("triton bf16 ") for n in by_name) and any(n.startswith("fp8 m") for n in by_name)
    for name, r in by_name.items():
        assert r["ms"] and r["ms"] > 0, name                       # every kernel ran (no build error)
    bf16 = [r for n, r in by_name.items() if n.startswith("triton bf16")]
    assert all(r["rel_err"] < 1e-2 for r in bf16)
    assert all(r["rel_err"] < 5e-2 for n, r in by_name.items() if n.startswith(("fp8 m", "int8 m")))
    assert by_name["DiT forward triton"]["rel_err"] < 2e-2 and by_name["DiT forward fp8"]["rel_err"] < 5e-2
    saved = json.loads((tmp_path / "out.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(rows)) and saved["device"].startswith("cpu")


def test_kernels_compile_for_hopper_onto_its_tensor_cores_without_spills(tmp_path):
    """No GPU needed: Triton compiles for sm_90 here (it ships ptxas / cuobjdump). The bf16 kernel must use HGMMA,
    the 8-bit one IGMMA (int8 Q·Kᵀ) and QGMMA (fp8 P·V), with no register spills."""
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = tmp_path / "sass.json"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "attention_kernels.py"), "--sass",
                           "--first-only", "--json", str(out)], env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 and "cuobjdump" in proc.stderr:
        pytest.skip("this Triton build has no CUDA tools")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = {r["kernel"].split()[0]: r for r in json.loads(out.read_text())["sass"]}
    assert set(report) == {"triton", "fp8", "int8"} and not any("error" in r for r in report.values())
    assert all(r["spill_bytes"] == 0 and r["MUFU.EX2"] > 0 for r in report.values())
    assert report["triton"]["HGMMA"] > 0
    assert report["fp8"]["IGMMA"] > 0 and report["fp8"]["QGMMA"] > 0
    assert report["int8"]["IGMMA"] > 0 and report["int8"]["HGMMA"] > 0
