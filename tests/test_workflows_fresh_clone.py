"""Every shipped workflow validates on a fresh clone: from an empty input folder (the sample inputs the workflows
name are put there: shipped files from workflows/inputs, character.png / set_depth.png drawn) and an empty models
folder (weights are a run-time matter: validation passes and lists the missing files)."""
import glob
import os
import subprocess
import sys

import pytest
from PIL import Image

from vibeboard_runner.registry import NodeRegistry
from vibeboard_runner.validation import validate_prompt
from vibeboard_runner.workflow import load_workflow
from vibeboard.common import runtime, sample_inputs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKFLOWS = sorted(glob.glob(os.path.join(ROOT, "workflows", "*.json")))


@pytest.fixture(scope="module")
def registry():
    return NodeRegistry.default(embedded=True)


def test_every_module_ships_a_workflow():
    assert {os.path.basename(p) for p in WORKFLOWS} >= {"shot_studio.json", "shot_studio.api.json",
                                                         "vfx_suite.json", "optics_engine.json", "wan_basics.json"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=os.path.basename)
def test_workflow_validates_from_a_clean_input_folder(path, registry, tmp_path, monkeypatch):
    inputs = tmp_path / "input"
    monkeypatch.setitem(runtime._dirs, "input", str(inputs))
    monkeypatch.setitem(runtime._dirs, "models", str(tmp_path / "models"))
    monkeypatch.delenv("VIBEBOARD_COMFYUI_DIR", raising=False)
    sample_inputs.ensure(str(inputs))
    result = validate_prompt(load_workflow(path, registry), registry)
    assert result.ok and not result.node_errors, result.summary()


def test_sample_inputs_are_drawn_and_never_overwrite(tmp_path):
    written = sample_inputs.ensure(str(tmp_path))
    assert {os.path.basename(p) for p in written} >= {"character.png", "set_depth.png", "shot_studio_blocking.json"}
    assert Image.open(tmp_path / "character.png").size == (832, 480)
    assert Image.open(tmp_path / "set_depth.png").mode == "L"
    Image.new("RGB", (8, 8)).save(tmp_path / "character.png")  # the user's own picture stays
    assert sample_inputs.ensure(str(tmp_path)) == []
    assert Image.open(tmp_path / "character.png").size == (8, 8)


def test_cli_validate_shot_studio_on_a_fresh_clone(tmp_path):
    env = dict(os.environ, VIBEBOARD_MODELS_DIR=str(tmp_path / "models"))
    env.pop("VIBEBOARD_COMFYUI_DIR", None)
    proc = subprocess.run([sys.executable, "-m", "vibeboard_runner", "validate", "workflows/shot_studio.json", "--input-dir",
                           str(tmp_path / "input")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok:")
    assert "vibeboard models pull storymem-lora" in proc.stdout  # what a run still needs, said up front
