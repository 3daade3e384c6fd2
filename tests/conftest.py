import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# This checkout's code wins over any installed copy (helpers work in separate git worktrees).
for path in (os.path.join(ROOT, "custom_nodes"), ROOT):
    if path not in sys.path:
        sys.path.insert(0, path)


import pytest  # noqa: E402


@pytest.fixture
def handler_env(tmp_path, monkeypatch):
    """The RunPod handler module with its folders in tmp_path and the service test nodes loaded."""
    from runner import runpod_handler
    from service_helpers import NODES_FILE
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
