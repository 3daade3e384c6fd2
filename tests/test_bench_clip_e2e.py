"""bench/clip_e2e.py --quick: the end-to-end benchmark (our CLI path vs diffusers' WanPipeline) still runs."""
import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_clip_e2e_quick_runs_both_paths_and_reports_every_stage(tmp_path):
    spec = importlib.util.spec_from_file_location("clip_e2e", os.path.join(ROOT, "bench", "clip_e2e.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    cols = bench.main(["--quick", "--workdir", str(tmp_path), "--json", str(tmp_path / "out.json")])
    assert set(cols) == {"ours (first)", "ours (warm)", "diffusers", "x264", "lossless"}
    # the lossless check: bf16 forwards against an fp32 copy (on CPU nothing is fused or compiled: ours == default)
    check = cols["lossless"]
    assert 0 < check["default vs fp32"] < 2e-2 and check["ours vs fp32"] == check["default vs fp32"]
    assert check["ours vs default"] == 0 and check["fused FFN blocks"] == 0
    for stage in ("load", "text encode", "sampling", "decode + MP4", "text → MP4", "files → MP4"):
        assert cols["ours (first)"][stage] > 0
    # the workflow decodes with Wan Decode to Video MP4 (overlapped): no separate decode / MP4 nodes ran
    assert "decode" not in cols["ours (first)"] and "MP4" not in cols["ours (first)"]
    for stage in ("text encode", "sampling", "decode", "MP4", "decode + MP4", "text → MP4"):
        assert cols["diffusers"][stage] > 0
    assert abs(cols["diffusers"]["decode + MP4"] - cols["diffusers"]["decode"] - cols["diffusers"]["MP4"]) < 1e-6
    mp4s = sorted(p.name for p in (tmp_path / "output").rglob("*.mp4"))
    assert len(mp4s) == 3 + 4  # two runs of ours + diffusers, each wrote its clip; 4 x264 thread checks
    text = bench.table(cols)
    assert "| text → MP4 (s) |" in text
    assert next(line for line in text.splitlines() if line.startswith("| decode + MP4 (s) |")).endswith("× |")


def test_clip_e2e_quick_lossy_modes_report_errors_against_bf16_and_skip_ratios(tmp_path):
    """--precision fp8 --step-cache reach our CLI runs; --lossy adds the fp8 microbench and the lossy samplings."""
    spec = importlib.util.spec_from_file_location("clip_e2e", os.path.join(ROOT, "bench", "clip_e2e.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    cols = bench.main(["--quick", "--workdir", str(tmp_path), "--no-diffusers", "--warm-runs", "0", "--lossy",
                       "--precision", "fp8", "--step-cache", "0.1"])
    assert set(cols) == {"ours (first)", "lossy", "lossless"}
    micro = cols["lossy"]["microbench"]
    assert micro["bf16 forward (s)"] > 0 and micro["fp8 forward (s)"] > 0 and micro["fp8 layers"] > 0
    assert 0 < micro["fp8 rel. err per forward"] < 3e-2
    rows = cols["lossy"]["sampling"]
    assert list(rows) == ["bf16", "fp8", "step cache 0.1", "fp8 + step cache 0.1"]
    assert rows["bf16"]["final rel. err"] == 0 and rows["fp8"]["final rel. err"] > 0
    assert all(0 <= r["skip ratio"] < 1 for r in rows.values())
    from vibeboard.wan import sampler as S
    assert S.LAST_STATS["precision"] == "fp8" and "skip_ratio" in S.LAST_STATS
