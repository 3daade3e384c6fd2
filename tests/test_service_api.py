"""The ComfyUI HTTP/WS API of `vibeboard serve`, driven by real HTTP and websocket clients on loopback."""
import base64
import os
import urllib.parse
import threading
import time

import pytest

from service_helpers import WsClient, http, make_server, multipart, wait_history
from service_nodes import workflow


@pytest.fixture
def server(tmp_path):
    srv = make_server(tmp_path)
    yield srv
    srv.stop_thread()


def test_prompt_ws_history_view(server):
    ws = WsClient(server.url)
    first = ws.until(lambda m: m["type"] == "status")[-1]
    assert first["data"]["sid"] == ws.client_id
    status, body, _ = http("POST", server.url + "/prompt", {"prompt": workflow(value=7, kind="png"),
                                                            "client_id": ws.client_id})
    assert status == 200, body
    prompt_id = body["prompt_id"]
    assert body["node_errors"] == {} and isinstance(body["number"], (int, float))
    messages = ws.until_done(prompt_id)
    types = [m["type"] for m in messages]
    for kind in ("execution_start", "execution_cached", "executing", "executed", "execution_success"):
        assert kind in types, types
    assert types.index("execution_success") < len(types) - 1  # executing null comes last
    executed = next(m for m in messages if m["type"] == "executed")
    assert executed["data"]["node"] == "9" and executed["data"]["prompt_id"] == prompt_id
    # history is written before `executing null` is sent
    status, hist, _ = http("GET", f"{server.url}/history/{prompt_id}")
    entry = hist[prompt_id]
    assert entry["status"]["status_str"] == "success" and entry["status"]["completed"] is True
    image = entry["outputs"]["9"]["images"][0]
    assert entry["prompt"][1] == prompt_id and entry["prompt"][2]["9"]["class_type"] == "SvcSave"
    status, data, headers = http("GET", f"{server.url}/view?filename={image['filename']}"
                                 f"&subfolder={image['subfolder']}&type=output")
    assert status == 200 and data[:8] == b"\x89PNG\r\n\x1a\n"
    assert headers["Content-Type"] == "image/png"
    # every output is pushed to the (default local) store by the upload workers and listed with a URL
    deadline = time.time() + 10
    while time.time() < deadline and not entry["vibeboard"]["files"][0].get("url"):
        time.sleep(0.05)
        entry = http("GET", f"{server.url}/history/{prompt_id}")[1][prompt_id]
    files = entry["vibeboard"]["files"]
    assert files and files[0]["url"].startswith("file://")
    assert os.path.isfile(urllib.parse.unquote(files[0]["url"][len("file://"):]))
    assert all("path" not in row for row in files)  # no server paths in history
    # /api mirror, list forms
    status, hist_all, _ = http("GET", server.url + "/api/history?max_items=1")
    assert list(hist_all) == [prompt_id]
    ws.close()


def test_failing_prompt_reports_node_and_message(server):
    ws = WsClient(server.url)
    status, body, _ = http("POST", server.url + "/prompt", {"prompt": workflow(fail=True), "client_id": ws.client_id})
    assert status == 200
    messages = ws.until_done(body["prompt_id"])
    error = next(m for m in messages if m["type"] == "execution_error")["data"]
    assert error["node_id"] == "3" and error["node_type"] == "SvcFail"
    assert "SvcFail refuses value 1" in error["exception_message"]
    entry = wait_history(server.url, body["prompt_id"])
    assert entry["status"]["status_str"] == "error"
    assert entry["status"]["messages"][-1][0] == "execution_error"
    ws.close()


def test_progress_queue_interrupt_and_routing(server):
    ws = WsClient(server.url)
    other = WsClient(server.url)  # must not get client-only events of ws's prompt
    slow = http("POST", server.url + "/prompt", {"prompt": workflow(seconds=3.0), "client_id": ws.client_id})[1]
    queued = http("POST", server.url + "/prompt", {"prompt": workflow(value=2), "client_id": ws.client_id})[1]
    ws.until(lambda m: m["type"] == "progress" and m["data"]["prompt_id"] == slow["prompt_id"])
    status, queue, _ = http("GET", server.url + "/queue")
    assert [q[1] for q in queue["queue_running"]] == [slow["prompt_id"]]
    assert [q[1] for q in queue["queue_pending"]] == [queued["prompt_id"]]
    assert len(queue["queue_running"][0]) == 5
    assert http("GET", server.url + "/prompt")[1] == {"exec_info": {"queue_remaining": 2}}
    # delete the pending one, interrupt the running one
    assert http("POST", server.url + "/queue", {"delete": [queued["prompt_id"]]})[0] == 200
    assert http("POST", server.url + "/interrupt", {"prompt_id": slow["prompt_id"]})[0] == 200
    messages = ws.until_done(slow["prompt_id"])
    assert any(m["type"] == "execution_interrupted" for m in messages)
    entry = wait_history(server.url, slow["prompt_id"])
    assert entry["status"]["status_str"] == "error"
    assert http("GET", f"{server.url}/history/{queued['prompt_id']}")[1] == {}
    other_types = {m["type"] for m in other.until(lambda m: m["type"] == "execution_interrupted")}
    assert not other_types & {"executing", "executed", "execution_start", "progress"}
    ws.close()
    other.close()


def test_ui_format_upload_object_info_system(server, tmp_path):
    from vibeboard_runner.registry import NodeRegistry
    info = http("GET", server.url + "/object_info")[1]
    assert "SvcSave" in info and info["SvcSave"]["output_node"] is True
    one = http("GET", server.url + "/api/object_info/SvcConst")[1]
    assert list(one) == ["SvcConst"] and one["SvcConst"]["input_order"]["required"] == ["value"]
    assert http("GET", server.url + "/object_info/Nope")[1] == {}
    stats = http("GET", server.url + "/system_stats")[1]
    assert {"os", "python_version", "ram_total", "embedded_python", "argv"} <= set(stats["system"])
    assert http("GET", server.url + "/features")[1]["max_upload_size"] == 100 * 1024 * 1024
    # UI-format workflow on /prompt: converted with the registry's widget order
    ui = {"nodes": [{"id": 1, "type": "SvcConst", "widgets_values": [5], "inputs": [],
                     "outputs": [{"name": "INT", "type": "INT", "links": [1]}]},
                    {"id": 2, "type": "SvcSave", "widgets_values": [0, "json", 1, "svc/ui"],
                     "inputs": [{"name": "value", "type": "INT", "link": 1, "widget": {"name": "value"}}],
                     "outputs": []}],
          "links": [[1, 1, 0, 2, 0, "INT"]], "version": 0.4}
    status, body, _ = http("POST", server.url + "/prompt", {"prompt": ui})
    assert status == 200, body
    entry = wait_history(server.url, body["prompt_id"])
    assert entry["status"]["status_str"] == "success", entry["status"]
    item = entry["outputs"]["2"]["files"][0]
    data = http("GET", f"{server.url}/view?filename={item['filename']}&subfolder={item['subfolder']}")[1]
    assert data == {"value": 5}
    # upload: name clash gets "(1)", same content is reused
    raw, ctype = multipart({"type": "input"}, {"image": ("pic.png", b"abc")})
    assert http("POST", server.url + "/upload/image", raw=raw, headers={"Content-Type": ctype})[1] == \
        {"name": "pic.png", "subfolder": "", "type": "input"}
    assert http("POST", server.url + "/upload/image", raw=raw, headers={"Content-Type": ctype})[1]["name"] == "pic.png"
    raw2, ctype2 = multipart({"subfolder": "a/b"}, {"image": ("pic.png", b"xyz")})
    assert http("POST", server.url + "/upload/image", raw=raw2, headers={"Content-Type": ctype2})[1]["subfolder"] == "a/b"
    raw3, ctype3 = multipart({}, {"image": ("pic.png", b"different")})
    assert http("POST", server.url + "/upload/image", raw=raw3, headers={"Content-Type": ctype3})[1]["name"] == \
        "pic (1).png"
    assert http("GET", f"{server.url}/view?filename=pic.png&type=input")[1] == b"abc"
    # history delete / clear
    assert http("POST", server.url + "/history", {"delete": [body["prompt_id"]]})[0] == 200
    assert http("GET", f"{server.url}/history/{body['prompt_id']}")[1] == {}


def test_vibeboard_job_endpoint_with_inputs(server):
    status, body, _ = http("POST", server.url + "/vibeboard/jobs", {
        "workflow": workflow(value=1, kind="json"), "inputs": {"1.value": 42},
        "output": {"prefix": "shots/take1"}})
    assert status == 201, body
    job_id = body["job_id"]
    deadline = time.time() + 20
    while time.time() < deadline:
        job = http("GET", f"{server.url}/vibeboard/jobs/{job_id}")[1]
        if job["status"] not in ("queued", "running", "uploading"):
            break
        time.sleep(0.05)
    assert job["status"] == "success", job
    out = job["outputs"][0]
    assert out["key"].startswith(f"shots/take1/{job_id}/9/")
    assert out["content_type"] == "application/json" and out["view_url"].startswith("/view?")
    assert http("GET", server.url + out["view_url"])[1] == {"value": 42}
    # base64 file input lands in the input folder and is referenced by name
    import io
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (255, 0, 0)).save(buf, format="PNG")
    png = base64.b64encode(buf.getvalue()).decode()
    status, body, _ = http("POST", server.url + "/vibeboard/jobs", {
        "workflow": {"1": {"class_type": "LoadImage", "inputs": {"image": "x.png"}},
                     "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "b64"}}},
        "inputs": {"1.image": {"base64": "data:image/png;base64," + png, "filename": "ref.png"}}})
    assert status == 201, body
    job = _wait_job(server, body["job_id"])
    assert job["status"] == "success", job
    assert any(name.endswith("ref.png") for name in os.listdir(server.dirs["input"]))
    assert job["outputs"][0]["content_type"] == "image/png"


def _wait_job(server, job_id, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = http("GET", f"{server.url}/vibeboard/jobs/{job_id}")[1]
        if job["status"] not in ("queued", "running", "uploading"):
            return job
        time.sleep(0.05)
    raise TimeoutError(job_id)


def test_job_input_by_url(server, tmp_path):
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
    from PIL import Image
    folder = tmp_path / "web"
    folder.mkdir()
    Image.new("RGB", (4, 4), (0, 255, 0)).save(folder / "plate.png")

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/plate.png"
        status, body, _ = http("POST", server.url + "/vibeboard/jobs", {
            "workflow": {"1": {"class_type": "LoadImage", "inputs": {"image": "x.png"}},
                         "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "url"}}},
            "inputs": {"1.image": {"url": url}}})
        assert status == 201, body
        job = _wait_job(server, body["job_id"])
        assert job["status"] == "success", job
        assert os.path.isfile(os.path.join(server.dirs["input"], f"vb-{body['job_id'][:8]}-plate.png"))
        status, body, _ = http("POST", server.url + "/vibeboard/jobs", {
            "workflow": {"1": {"class_type": "LoadImage", "inputs": {"image": "x.png"}},
                         "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}}},
            "inputs": {"1.image": {"url": url + ".missing"}}})
        assert status == 400 and body["error"]["type"] == "input_download_failed"
    finally:
        httpd.shutdown()


def test_front_jumps_queue_and_free(server):
    ws = WsClient(server.url)
    slow = http("POST", server.url + "/prompt", {"prompt": workflow(seconds=0.6), "client_id": ws.client_id})[1]
    ws.until(lambda m: m["type"] == "execution_start")  # the slow one is running; the next two wait
    normal = http("POST", server.url + "/prompt", {"prompt": workflow(value=2), "client_id": ws.client_id})[1]
    front = http("POST", server.url + "/prompt", {"prompt": workflow(value=3), "client_id": ws.client_id,
                                                  "front": True})[1]
    assert front["number"] < 0 < normal["number"]
    messages = ws.until_done(normal["prompt_id"])
    starts = [m["data"]["prompt_id"] for m in messages if m["type"] == "execution_start"]
    assert starts == [slow["prompt_id"], front["prompt_id"], normal["prompt_id"]]
    assert http("POST", server.url + "/free", {"unload_models": True, "free_memory": True})[0] == 200
    ws.close()


def test_extensions_list_and_serve_the_pack_widgets(server):
    status, names, _ = http("GET", server.url + "/api/extensions")
    assert status == 200 and "/extensions/vibeboard/vibeboard_widgets.js" in names
    status, body, headers = http("GET", server.url + "/extensions/vibeboard/vibeboard_widgets.js")
    assert status == 200 and b"registerExtension" in body
    assert "javascript" in headers.get("Content-Type", "")


def test_free_and_system_stats_report_the_vram_manager(server):
    import torch

    from vibeboard.models import vram
    old = vram._DEFAULT
    vram.set_manager(vram.VramManager(budget_bytes=1 << 20, device="cpu"))
    try:
        vram.manager().register("tiny", torch.nn.Linear(4, 4))
        vram.manager().load("tiny")
        stats = http("GET", server.url + "/api/system_stats")[1]
        assert [m["name"] for m in stats["vibeboard"]["models"]] == ["tiny"]
        status, body, _ = http("POST", server.url + "/api/free", {"unload_models": True})
        assert status == 200 and body["unloaded"] == ["tiny"]
        assert http("GET", server.url + "/system_stats")[1]["vibeboard"]["models"] == []
        assert http("POST", server.url + "/free", raw=b"[1]", headers={"Content-Type": "application/json"})[0] == 400
    finally:
        vram._DEFAULT = old


def test_progress_state_messages_for_the_new_frontend(server):
    ws = WsClient(server.url)
    body = http("POST", server.url + "/prompt", {"prompt": workflow(seconds=0.3), "client_id": ws.client_id})[1]
    messages = ws.until_done(body["prompt_id"])
    states = [m["data"] for m in messages if m["type"] == "progress_state"]
    assert states and all(s["prompt_id"] == body["prompt_id"] for s in states)
    seen = {state for s in states for node in s["nodes"].values() for state in [node["state"]]}
    assert "running" in seen
    last = states[-1]["nodes"]
    assert last and all(n["state"] == "finished" and n["value"] == n["max"] for n in last.values())
    assert set(last["1"]) >= {"value", "max", "state", "node_id", "prompt_id", "display_node_id", "real_node_id"}
    # ordered like ComfyUI: progress_state (running) → executing for each node start
    kinds = [m["type"] for m in messages]
    first_exec = kinds.index("executing")
    assert kinds[first_exec - 1] == "progress_state"
    assert messages[first_exec - 1]["data"]["nodes"][messages[first_exec]["data"]["node"]]["state"] == "running"
    ws.close()
