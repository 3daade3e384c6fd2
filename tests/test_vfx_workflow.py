"""workflows/vfx_suite(.api).json: the UI file converts to the API twin and the twin runs headless."""
import json
import os

from vibeboard_runner.executor import Executor
from vibeboard_runner.registry import NodeRegistry
from vibeboard_runner.workflow import load_workflow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_vfx_suite_runs_headless_without_weights(tmp_path):
    reg = NodeRegistry.default()
    api = json.load(open(os.path.join(ROOT, "workflows", "vfx_suite.api.json")))
    ui = json.load(open(os.path.join(ROOT, "workflows", "vfx_suite.json")))
    converted = load_workflow(ui, reg)
    assert {k: v["inputs"] for k, v in converted.items()} == {k: v["inputs"] for k, v in api.items()}
    muted = {n["type"] for n in ui["nodes"] if n.get("mode") == 2}
    assert {"VBChangeCamera", "VBFixFocus", "VBQwenEdit"} <= muted  # weight-needing nodes ship muted
    ex = Executor(reg, output_dir=tmp_path / "out", input_dir=tmp_path / "in", temp_dir=tmp_path / "t",
                  models_dir=str(tmp_path / "models"))
    res = ex.execute(converted)
    assert res.status == "success", res.error
    files = {f["node"]: f for f in res.output_files()}
    assert set(files) >= {"5", "6", "8", "9"}
    assert files["5"]["filename"].endswith(".mp4") and os.path.getsize(files["5"]["path"]) > 0
    assert len(open(files["6"]["path"]).read().strip().splitlines()) == 34  # header + 33 poses
    report = json.load(open(files["9"]["path"]))
    assert report["shot"] == "vfx_sample" and report["frames"] == 1
