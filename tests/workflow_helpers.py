"""The studio modules' saved-workflow tests: load workflows/<name>.json (UI format) with the node registry, check it
converts to its API twin workflows/<name>.api.json, and run it headless with the embedded executor in tmp folders."""
import json
import os

from vibeboard_runner.executor import Executor
from vibeboard_runner.registry import NodeRegistry
from vibeboard_runner.workflow import load_workflow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKFLOWS = os.path.join(ROOT, "workflows")


def run_saved_workflow(name: str, tmp_path):
    """(execution result, the UI file as loaded); fails unless the UI converts to its twin and the run succeeds."""
    registry = NodeRegistry.default()
    with open(os.path.join(WORKFLOWS, f"{name}.json")) as handle:
        ui = json.load(handle)
    with open(os.path.join(WORKFLOWS, f"{name}.api.json")) as handle:
        api = json.load(handle)
    converted = load_workflow(ui, registry)
    assert {k: v["inputs"] for k, v in converted.items()} == {k: v["inputs"] for k, v in api.items()}
    executor = Executor(registry, output_dir=tmp_path / "out", input_dir=tmp_path / "in", temp_dir=tmp_path / "t",
                        models_dir=str(tmp_path / "models"))
    result = executor.execute(converted)
    assert result.status == "success", result.error
    return result, ui


def muted_types(ui: dict) -> set:
    """Node types the UI file ships muted (mode 2): the ones that need weights or a service."""
    return {n["type"] for n in ui["nodes"] if n.get("mode") == 2}
