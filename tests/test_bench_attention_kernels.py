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
