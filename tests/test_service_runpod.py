"""RunPod handler: called directly (no SDK needed) and through the SDK's local test-input mode."""
import base64
import json
import os
import shutil
import subprocess
import sys

import pytest

from service_helpers import NODES_FILE
from service_nodes import workflow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_handler_direct_success_with_progress(handler_env, tmp_path):
    updates = []
    out = handler_env.handler({"id": "rp-1", "input": {"workflow": workflow(seconds=0.2, kind="mp4"),
                                                       "inputs": {"1.value": 4},
                                                       "output": {"prefix": "runpod"}}}, progress=updates.append)
    assert out["status"] == "success", out
    row = out["outputs"][0]
    assert row["key"].startswith("runpod/rp-1/9/") and row["content_type"] == "video/mp4"
    assert os.path.isfile(row["url"][len("file://"):])
    assert any("node" in u and u.get("max") == 10 for u in updates)
    assert any(u.get("message", "").startswith("running node") for u in updates)


def test_handler_base64_image_input(handler_env):
    import io
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (9, 9, 9)).save(buf, format="PNG")
    out = handler_env.handler({"id": "rp-img", "input": {
        "workflow": {"1": {"class_type": "LoadImage", "inputs": {"image": "x.png"}},
                     "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "rp"}}},
        "inputs": {"1.image": {"base64": base64.b64encode(buf.getvalue()).decode(), "filename": "plate.png"}}}})
    assert out.get("status") == "success", out
    assert out["outputs"][0]["content_type"] == "image/png"


def test_handler_errors(handler_env):
    out = handler_env.handler({"id": "rp-2", "input": {"workflow": workflow(fail=True)}})
    assert out["error"].startswith("error: node 3 (SvcFail)") and out["details"]["node_id"] == "3"
    out = handler_env.handler({"id": "rp-3", "input": {"workflow": {"1": {"class_type": "Nope", "inputs": {}}}}})
    assert "Nope" in out["error"]
    out = handler_env.handler({"id": "rp-4", "input": {"workflow": workflow(), "inputs": {"77.value": 1}}})
    assert "not in the workflow" in out["error"]
    assert "required" in handler_env.handler({"id": "rp-5", "input": {}})["error"]
    out = handler_env.handler({"id": "rp-6", "input": {"workflow": workflow(), "inputs": {
        "1.value": {"base64": base64.b64encode(b"abc").decode(), "filename": "../../x"}}}})
    assert "error" in out


def _runpod_python():
    try:
        import runpod  # noqa: F401
        return sys.executable
    except ImportError:
        candidate = os.environ.get("VIBEBOARD_RUNPOD_PYTHON")
        return candidate if candidate and os.path.exists(candidate) else None


@pytest.mark.skipif(_runpod_python() is None, reason="runpod SDK not installed (pip install runpod)")
def test_sdk_local_test_input(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIBEBOARD_", "RUNPOD_"))}
    env.update({"VIBEBOARD_OUTPUT_DIR": str(tmp_path / "output"), "VIBEBOARD_INPUT_DIR": str(tmp_path / "input"),
                "VIBEBOARD_TEMP_DIR": str(tmp_path / "temp"), "VIBEBOARD_STORE_DIR": str(tmp_path / "store"),
                "VIBEBOARD_EXTRA_NODES": NODES_FILE, "PYTHONPATH": ROOT})
    work = tmp_path / "work"
    work.mkdir()
    # the SDK's test-input file in the working directory
    (work / "test_input.json").write_text(json.dumps({"input": {"workflow": workflow(kind="png"),
                                                                "output": {"prefix": "sdk"}}}))
    proc = subprocess.run([_runpod_python(), "-m", "vibeboard_runner.runpod_handler"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    stored = list((tmp_path / "store" / "sdk").rglob("*.png"))
    assert len(stored) == 1 and stored[0].read_bytes()[:4] == b"\x89PNG"
    # --test_input with a failing workflow: the SDK exits non-zero
    proc = subprocess.run([_runpod_python(), "-m", "vibeboard_runner.runpod_handler", "--test_input",
                           json.dumps({"input": {"workflow": workflow(fail=True)}})], cwd=work, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "SvcFail" in proc.stdout + proc.stderr
