"""The end of a job on the websocket follows ComfyUI's order exactly: final event, then `status`, then
`executing {node: null}`. Clients such as comfy-api-simplified stop at the first `queue_remaining: 0` status."""
import time

import pytest

from service_helpers import WsClient, http, make_server
from service_nodes import workflow


@pytest.fixture
def server(tmp_path):
    srv = make_server(tmp_path)
    yield srv
    srv.stop_thread()


def _tail(messages, prompt_id):
    """The job's last messages from its final event on, as (type, key detail) pairs."""
    start = max(i for i, m in enumerate(messages) if m["type"] in
                ("execution_success", "execution_error", "execution_interrupted")
                and m["data"].get("prompt_id") == prompt_id)
    tail = []
    for message in messages[start:]:
        if message["type"] == "status":
            tail.append(("status", message["data"]["status"]["exec_info"]["queue_remaining"]))
        elif message["type"] == "executing":
            tail.append(("executing", message["data"]["node"]))
        else:
            tail.append((message["type"], message["data"].get("prompt_id")))
    return tail


def _run(server, prompt, interrupt_after_s=None):
    ws = WsClient(server.url)
    status, body, _ = http("POST", server.url + "/prompt", {"prompt": prompt, "client_id": ws.client_id})
    assert status == 200, body
    prompt_id = body["prompt_id"]
    if interrupt_after_s is not None:
        ws.until(lambda m: m["type"] == "executing" and m["data"].get("node") == "2")
        time.sleep(interrupt_after_s)
        assert http("POST", server.url + "/interrupt", {"prompt_id": prompt_id})[0] == 200
    messages = ws.until_done(prompt_id)
    ws.close()
    return _tail(messages, prompt_id), prompt_id


def test_success_ends_with_execution_success_then_status_then_executing_null(server):
    tail, prompt_id = _run(server, workflow(3))
    assert tail == [("execution_success", prompt_id), ("status", 0), ("executing", None)]


def test_error_ends_with_execution_error_then_status_then_executing_null(server):
    tail, prompt_id = _run(server, workflow(fail=True))
    assert tail == [("execution_error", prompt_id), ("status", 0), ("executing", None)]


def test_interrupt_ends_with_execution_interrupted_then_status_then_executing_null(server):
    tail, prompt_id = _run(server, workflow(seconds=5.0), interrupt_after_s=0.2)
    assert tail == [("execution_interrupted", prompt_id), ("status", 0), ("executing", None)]


def test_uploaded_file_is_world_readable_like_comfyui_writes_it(server, tmp_path):
    import os
    import stat

    from service_helpers import multipart
    raw, ctype = multipart({"type": "input"}, {"image": ("mode.png", b"abc")})
    status, body, _ = http("POST", server.url + "/upload/image", raw=raw, headers={"Content-Type": ctype})
    assert status == 200, body
    mode = stat.S_IMODE(os.stat(tmp_path / "input" / "mode.png").st_mode)
    assert mode == 0o644
