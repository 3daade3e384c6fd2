"""workflows/asset_bin(.api).json: the UI file converts to the API twin and runs headless with no weights."""
import json
import os

import pytest

pytest.importorskip("trimesh")

from runner.executor import Executor  # noqa: E402
from runner.registry import NodeRegistry  # noqa: E402
from runner.workflow import load_workflow  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_asset_bin_runs_headless_without_weights(tmp_path):
    import trimesh

    reg = NodeRegistry.default()
    api = json.load(open(os.path.join(ROOT, "workflows", "asset_bin.api.json")))
    ui = json.load(open(os.path.join(ROOT, "workflows", "asset_bin.json")))
    converted = load_workflow(ui, reg)
    assert {k: v["inputs"] for k, v in converted.items()} == {k: v["inputs"] for k, v in api.items()}
    assert {n["type"] for n in ui["nodes"] if n.get("mode") == 2} == {"VBSamLoader"}  # needs weights: muted
    ex = Executor(reg, output_dir=tmp_path / "out", input_dir=tmp_path / "in", temp_dir=tmp_path / "t",
                  models_dir=str(tmp_path / "models"))
    res = ex.execute(converted)
    assert res.status == "success", res.error
    glb = [f for f in res.output_files() if f["filename"].endswith(".glb")]
    assert len(glb) == 1
    scene = trimesh.load(glb[0]["path"], force="scene")
    assert sorted(scene.graph.nodes_geometry) == ["cabinet", "crate", "stool"]
    assert os.path.isfile(tmp_path / "out" / "vibeboard" / "assets" / "assets.sqlite")
