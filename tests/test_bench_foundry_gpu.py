"""bench/foundry_gpu.py --quick: the FlashPortrait memory-mode benchmark runs every mode through the Wan runtime."""
import importlib.util
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_foundry_bench_quick_times_every_memory_mode(tmp_path):
    spec = importlib.util.spec_from_file_location("foundry_gpu", os.path.join(ROOT, "bench", "foundry_gpu.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.main(["--quick", "--json", str(tmp_path / "out.json")])
    assert [r["mode"] for r in rows] == ["full", "model_offload", "sequential"]
    assert all(r["finite"] and r["step_s"] > 0 and r["first_step_s"] > 0 for r in rows)
    saved = json.load(open(tmp_path / "out.json"))
    assert saved["rows"] == rows and "2 window(s)" in saved["note"] and "2 passes" in saved["note"]
    assert "| sequential |" in bench.table(rows)
