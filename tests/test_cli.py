import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def vibeboard(*args, cwd):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "custom_nodes")]))
    return subprocess.run([sys.executable, "-m", "vibeboard_runner", *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=120)


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "input").mkdir()
    pixels = (np.arange(12 * 10 * 3).reshape(12, 10, 3) % 255).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "input" / "frame.png")
    workflow = {"1": {"class_type": "LoadImage", "inputs": {"image": "frame.png"}},
                "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "cli/test"}}}
    (tmp_path / "wf.json").write_text(json.dumps(workflow))
    return tmp_path


def test_run_ok_writes_output_and_summary(workdir):
    proc = vibeboard("run", "wf.json", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    saved = workdir / "output" / "cli" / "test_00001_.png"
    assert saved.is_file()
    assert np.array_equal(np.asarray(Image.open(saved)), np.asarray(Image.open(workdir / "input" / "frame.png")))
    assert "2 executed, 0 cached" in proc.stdout and "output: output/cli/test_00001_.png" in proc.stdout
    assert "#2 Save Image" in proc.stderr  # progress lines name the nodes


def test_run_json_and_set_override(workdir):
    proc = vibeboard("run", "wf.json", "--json", "--set", "2.filename_prefix=other/x", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    assert payload["status"] == "success"
    assert payload["files"][0]["filename"] == "x_00001_.png" and payload["files"][0]["subfolder"] == "other"


def test_broken_workflow_exit_code_and_message(workdir):
    (workdir / "bad.json").write_text(json.dumps({"1": {"class_type": "LoadImage", "inputs": {"image": "nope.png"}},
                                                  "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}}}))
    proc = vibeboard("run", "bad.json", cwd=workdir)
    assert proc.returncode == 3
    assert "node 1 (LoadImage)" in proc.stderr and "nope.png" in proc.stderr
    proc = vibeboard("validate", "bad.json", cwd=workdir)
    assert proc.returncode == 3


def test_unreadable_workflow(workdir):
    (workdir / "junk.json").write_text("{oops")
    proc = vibeboard("run", "junk.json", cwd=workdir)
    assert proc.returncode == 2 and "invalid JSON" in proc.stderr
    proc = vibeboard("run", "missing.json", cwd=workdir)
    assert proc.returncode == 2 and "not found" in proc.stderr


def test_execution_failure_exit_code(workdir):
    (workdir / "input" / "broken.png").write_bytes(b"not an image")
    (workdir / "wf2.json").write_text(json.dumps({
        "1": {"class_type": "LoadImage", "inputs": {"image": "broken.png"}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}))
    proc = vibeboard("run", "wf2.json", cwd=workdir)
    assert proc.returncode == 4
    assert "Failed at node 1 (LoadImage)" in proc.stderr


def test_validate_ok_and_nodes_json(workdir):
    proc = vibeboard("validate", "wf.json", cwd=workdir)
    assert proc.returncode == 0 and proc.stdout.startswith("ok:")
    proc = vibeboard("nodes", "--json", cwd=workdir)
    info = json.loads(proc.stdout)
    load = info["LoadImage"]
    assert load["input_order"]["required"] == ["image"] and load["output"] == ["IMAGE", "MASK"]
    assert load["input"]["required"]["image"][1]["image_upload"] is True
    assert info["SaveImage"]["output_node"] is True
