"""Review fix in the RunPod handler: a job's workflow is JSON (object or text), never a path on the worker."""
import json
import os

from service_nodes import workflow


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
