"""bench/talking_head_gpu.py --quick: the talking-head GPU benchmark still runs every memory mode of the Wan runtime
(full, model offload, block swap, sequential) through `wan.sampler.sample()` with the audio adapter, on CPU."""
import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_talking_head_bench_quick_reports_each_memory_mode(tmp_path):
    path = os.path.join(ROOT, "bench", "talking_head_gpu.py")
    spec = importlib.util.spec_from_file_location("talking_head_gpu", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.main(["--quick", "--json", str(tmp_path / "rows.json")])
    assert [r["mode"] for r in rows] == ["full", "model_offload", "blockswap", "sequential"]
    for r in rows:
        assert r["steps"] == 2 and r["s_per_step"] > 0 and r["first_step_s"] > 0
    assert rows[2]["resident_blocks"] == 2
    assert (tmp_path / "rows.json").exists()
