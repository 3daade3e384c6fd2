"""Review fix in the RunPod handler: a job's workflow is JSON (object or text), never a path on the worker."""
import json
import os

import pytest

from service_helpers import NODES_FILE
from service_nodes import workflow


@pytest.fixture
def handler_env(tmp_path, monkeypatch):
    from runner import runpod_handler
    for key in list(os.environ):
        if key.startswith("VIBEBOARD_"):
            monkeypatch.delenv(key)
    for kind in ("output", "input", "temp"):
        monkeypatch.setenv(f"VIBEBOARD_{kind.upper()}_DIR", str(tmp_path / kind))
    monkeypatch.setenv("VIBEBOARD_STORE_DIR", str(tmp_path / "store"))
    monkeypatch.setenv("VIBEBOARD_EXTRA_NODES", NODES_FILE)
    monkeypatch.setenv("RUNPOD_WEBHOOK_GET_JOB", "")
    runpod_handler._state.clear()
    yield runpod_handler
    runpod_handler._state.clear()


def test_workflow_string_is_not_read_as_a_worker_file(handler_env, tmp_path):
    secret = tmp_path / "private" / "wf.json"
    secret.parent.mkdir()
    secret.write_text(json.dumps(workflow(kind="png")))
    out = handler_env.handler({"id": "rp-path", "input": {"workflow": str(secret)}})
    assert "error" in out and "JSON" in out["error"]
    assert not os.listdir(tmp_path / "output")  # nothing ran


def test_workflow_as_json_text_still_works(handler_env):
    out = handler_env.handler({"id": "rp-text", "input": {"workflow": json.dumps(workflow(kind="png"))}})
    assert out.get("status") == "success", out
