"""Remote ComfyUI backend against our own server on loopback as the stand-in ComfyUI (same HTTP/WS API)."""
import asyncio
import json
import os
import threading
import time

import pytest

from vibeboard_runner.remote_comfyui import RemoteComfyUI
from vibeboard_runner.storage import LocalStorage
from service_helpers import make_server
from service_nodes import workflow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = make_server(tmp_path_factory.mktemp("remote"), token="tok")
    yield srv
    srv.stop_thread()


def _all_kinds():
    prompt = {"1": {"class_type": "SvcConst", "inputs": {"value": 9}}}
    for i, kind in enumerate(("png", "mp4", "wav", "json"), start=10):
        prompt[str(i)] = {"class_type": "SvcSave", "inputs": {"value": ["1", 0], "kind": kind, "size_kb": 1,
                                                              "filename_prefix": f"remote/{kind}"}}
    return prompt


def test_every_output_kind_downloaded_and_pushed(server, tmp_path):
    events = []
    remote = RemoteComfyUI(server.url, token="tok")
    result = remote.run(_all_kinds(), str(tmp_path / "dl"), on_event=lambda e, d: events.append(e))
    assert result.status == "success", result.error
    assert not result.polled and result.reconnects == 0
    assert "execution_start" in events and "executed" in events
    keys = sorted({f["key"] for f in result.files})
    assert keys == ["audio", "files", "images"]  # png + mp4 under images, wav audio, json files
    assert len(result.files) == 4
    for row in result.files:
        remote_path = os.path.join(server.dirs["output"], row["subfolder"], row["filename"])
        assert open(row["path"], "rb").read() == open(remote_path, "rb").read()
    store = LocalStorage(str(tmp_path / "store"))
    from vibeboard_runner.storage import push_outputs
    pushed = push_outputs(store, result.prompt_id, result.files)
    assert all(p["url"].startswith("file://") for p in pushed)
    assert {p["content_type"] for p in pushed} == {"image/png", "video/mp4", "audio/wav", "application/json"}


def test_remote_error_and_invalid(server, tmp_path):
    remote = RemoteComfyUI(server.url, token="tok")
    result = remote.run(workflow(fail=True), str(tmp_path))
    assert result.status == "error" and result.error["node_id"] == "3"
    assert "SvcFail" in result.error["exception_message"]
    bad = workflow()
    bad["1"]["inputs"]["value"] = 99999
    result = remote.run(bad, str(tmp_path))
    assert result.status == "invalid" and "bigger than max" in result.validation_summary


def test_reconnects_when_socket_drops(server, tmp_path):
    remote = RemoteComfyUI(server.url, token="tok", backoff_s=0.05)
    box = {}
    thread = threading.Thread(target=lambda: box.update(r=remote.run(workflow(seconds=1.5), str(tmp_path))))
    thread.start()
    deadline = time.time() + 10
    while remote.client_id not in server.hub.sockets and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    ws = server.hub.sockets[remote.client_id]
    asyncio.run_coroutine_threadsafe(ws.close(), server._loop).result(5)  # server drops the client
    thread.join(30)
    result = box["r"]
    assert result.status == "success" and result.reconnects >= 1
    assert len(result.files) == 1 and os.path.isfile(result.files[0]["path"])


def test_polling_fallback_without_websocket(server, tmp_path):
    remote = RemoteComfyUI(server.url, token="tok", ws_path="/no-websocket-here", poll_interval_s=0.1)
    result = remote.run(workflow(kind="json"), str(tmp_path))
    assert result.polled and result.status == "success"
    assert json.load(open(result.files[0]["path"])) == {"value": 1}


def test_cli_run_with_comfyui_backend(server, tmp_path, capsys):
    from vibeboard_runner.cli import main
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(workflow(kind="png")))
    code = main(["run", str(path), "--backend", "comfyui", "--url", server.url, "--token", "tok",
                 "--output-dir", str(tmp_path / "out"), "--json", "--quiet"])
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["status"] == "success" and os.path.isfile(payload["files"][0]["path"])
    code = main(["run", str(path), "--backend", "comfyui", "--url", server.url, "--token", "wrong",
                 "--output-dir", str(tmp_path / "out"), "--quiet"])
    assert code != 0


def test_ui_workflow_converted_with_remote_object_info(server, tmp_path):
    from vibeboard_runner.remote_comfyui import RemoteRegistry
    from vibeboard_runner.workflow import load_workflow
    remote = RemoteComfyUI(server.url, token="tok")
    ui = {"nodes": [{"id": 1, "type": "SvcConst", "widgets_values": [5], "inputs": [],
                     "outputs": [{"name": "INT", "type": "INT", "links": [1]}]},
                    {"id": 2, "type": "SvcSave", "widgets_values": [0, "json", 1, "svc/ui"],
                     "inputs": [{"name": "value", "type": "INT", "link": 1, "widget": {"name": "value"}}],
                     "outputs": []}],
          "links": [[1, 1, 0, 2, 0, "INT"]], "version": 0.4}
    prompt = load_workflow(ui, RemoteRegistry(remote.object_info()))
    assert prompt["1"]["inputs"] == {"value": 5}
    assert prompt["2"]["inputs"]["kind"] == "json" and prompt["2"]["inputs"]["value"] == ["1", 0]
    result = remote.run(prompt, str(tmp_path))
    assert result.status == "success" and json.load(open(result.files[0]["path"])) == {"value": 5}
