import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# This checkout's code wins over any installed copy (helpers work in separate git worktrees).
for path in (os.path.join(ROOT, "custom_nodes"), ROOT):
    if path not in sys.path:
        sys.path.insert(0, path)


import pytest  # noqa: E402
import torch  # noqa: E402

# Triton decides interpreter-or-GPU when a kernel is defined (at import of vibeboard.wan.attention), and any test that
# imports the whole pack defines them: on a machine without CUDA the interpreter must be on before the first import,
# not only in the kernel tests' own modules (else the result depends on the test order).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture
def handler_env(tmp_path, monkeypatch):
    """The RunPod handler module with its folders in tmp_path and the service test nodes loaded."""
    from vibeboard_runner import runpod_handler
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


# --- managed-API tests (helpers in managed_api_replay.py) ---------------------------------------------
@pytest.fixture
def api_env(tmp_path, monkeypatch):
    """Host folders, keys and ledger in tmp_path; fal polling fast; no inherited VIBEBOARD_* settings."""
    from managed_api_replay import FAL_KEY, XAI_KEY
    from vibeboard.common import runtime
    for key in list(os.environ):
        if key.startswith("VIBEBOARD_"):
            monkeypatch.delenv(key)
    runtime.set_host_dirs(output=str(tmp_path / "output"), input=str(tmp_path / "input"),
                          temp=str(tmp_path / "temp"), models=str(tmp_path / "models"))
    monkeypatch.setenv("FAL_KEY", FAL_KEY)
    monkeypatch.setenv("XAI_API_KEY", XAI_KEY)
    monkeypatch.setenv("VIBEBOARD_FAL_POLL_S", "0.005")
    monkeypatch.setenv("VIBEBOARD_COST_DB", str(tmp_path / "costs.sqlite"))
    monkeypatch.setenv("VIBEBOARD_VISION_DB", str(tmp_path / "vision.sqlite"))
    yield tmp_path
    runtime.set_host_hooks(None, None)


@pytest.fixture
def fal_replay(monkeypatch):
    """fal_replay(interactions, files) → a started ReplayServer that fal-client is pointed at."""
    import contextlib
    from managed_api_replay import ReplayServer
    stack = contextlib.ExitStack()

    def start(interactions, files=None):
        server = stack.enter_context(ReplayServer(interactions, files))
        for env in ("VIBEBOARD_FAL_QUEUE_URL", "VIBEBOARD_FAL_REST_URL", "VIBEBOARD_FAL_CDN_URL"):
            monkeypatch.setenv(env, server.base)
        return server

    with stack:
        yield start
