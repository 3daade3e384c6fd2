"""workflows/stagecraft(.api).json: the UI file converts to the API twin and runs headless with no weights on
the shipped blocking document."""
import json
import os

from vibeboard_runner.executor import Executor
from vibeboard_runner.registry import NodeRegistry
from vibeboard_runner.workflow import load_workflow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_stagecraft_runs_headless_without_weights(tmp_path):
    from vibeboard.media.video import probe_video

    reg = NodeRegistry.default()
    api = json.load(open(os.path.join(ROOT, "workflows", "stagecraft.api.json")))
    ui = json.load(open(os.path.join(ROOT, "workflows", "stagecraft.json")))
    converted = load_workflow(ui, reg)
    assert {k: v["inputs"] for k, v in converted.items()} == {k: v["inputs"] for k, v in api.items()}
    ex = Executor(reg, output_dir=tmp_path / "out", input_dir=tmp_path / "in", temp_dir=tmp_path / "t",
                  models_dir=str(tmp_path / "models"))
    res = ex.execute(converted)
    assert res.status == "success", res.error
    files = {f["node"]: f for f in res.output_files()}
    assert probe_video(files["4"]["path"]).frame_count == 48
    assert json.load(open(files["3"]["path"]))["ok"] is True
    assert files["2"]["filename"].endswith(".svg")
    assert json.load(open(files["5"]["path"]))["width"] == 320
    assert len([f for f in res.output_files() if f["node"] == "8"]) == 12  # CustomX scene video, shot 2
    assert {n["type"] for n in ui["nodes"] if n.get("mode") == 2} == {"VBUnrealApplyBeat", "VBNitroGenActions"}
