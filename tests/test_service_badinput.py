"""Bad input table: every case gets a clear 4xx JSON error and the server keeps serving."""
import json

import pytest

from service_helpers import WsClient, http, make_server, multipart, wait_history
from service_nodes import workflow

UPLOAD_LIMIT = 64 * 1024
PROMPT_LIMIT = 256 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad")
    srv = make_server(tmp, max_upload_bytes=UPLOAD_LIMIT, max_prompt_bytes=PROMPT_LIMIT, max_json_depth=32)
    (tmp / "secret.txt").write_text("outside")
    yield srv
    srv.stop_thread()


def _deep(levels):
    text = "[" * levels + "]" * levels
    return ('{"prompt": {"1": {"class_type": "SvcConst", "inputs": {"value": 1, "x": ' + text + '}}}}').encode()


def _upload(fields, files):
    body, ctype = multipart(fields, files)
    return {"raw": body, "headers": {"Content-Type": ctype}}


W = workflow()
CASES = [
    # (name, method, path, kwargs, expected status, expected error type or None)
    ("malformed json", "POST", "/prompt", {"raw": b"{not json", "headers": {"Content-Type": "application/json"}},
     400, "invalid_json"),
    ("empty body", "POST", "/prompt", {"raw": b""}, 400, "invalid_json"),
    ("body not an object", "POST", "/prompt", {"body": [1, 2]}, 400, "invalid_request"),
    ("no prompt key", "POST", "/prompt", {"body": {"client_id": "x"}}, 400, "no_prompt"),
    ("prompt not an object", "POST", "/prompt", {"body": {"prompt": "hello"}}, 400, "invalid_prompt"),
    ("node without class_type", "POST", "/prompt", {"body": {"prompt": {"1": {"inputs": {}}}}}, 400,
     "invalid_prompt"),
    ("unknown node class", "POST", "/prompt",
     {"body": {"prompt": {**W, "5": {"class_type": "NoSuchNode", "inputs": {}}}}}, 400, "invalid_prompt"),
    ("link to missing node", "POST", "/prompt",
     {"body": {"prompt": {"9": {**W["9"], "inputs": {**W["9"]["inputs"], "value": ["77", 0]}}}}}, 400,
     "invalid_prompt"),
    ("dependency cycle", "POST", "/prompt", {"body": {"prompt": {
        "1": {"class_type": "SvcSlow", "inputs": {"value": ["2", 0], "seconds": 0}},
        "2": {"class_type": "SvcSlow", "inputs": {"value": ["1", 0], "seconds": 0}},
        "9": {"class_type": "SvcSave", "inputs": {"value": ["2", 0], "kind": "png", "size_kb": 1,
                                                  "filename_prefix": "x"}}}}}, 400, "dependency_cycle"),
    ("missing required input", "POST", "/prompt",
     {"body": {"prompt": {"1": W["1"], "9": {"class_type": "SvcSave", "inputs": {"value": ["1", 0]}}}}}, 400,
     "prompt_outputs_failed_validation"),
    ("value above max", "POST", "/prompt",
     {"body": {"prompt": {**W, "1": {"class_type": "SvcConst", "inputs": {"value": 5000}}}}}, 400,
     "prompt_outputs_failed_validation"),
    ("combo value not in list", "POST", "/prompt",
     {"body": {"prompt": {**W, "9": {**W["9"], "inputs": {**W["9"]["inputs"], "kind": "exe"}}}}}, 400,
     "prompt_outputs_failed_validation"),
    ("no output node", "POST", "/prompt", {"body": {"prompt": {"1": W["1"]}}}, 400, "prompt_no_outputs"),
    ("json nested too deep", "POST", "/prompt", {"raw": _deep(200)}, 400, "json_too_deep"),
    ("json nested past the parser limit", "POST", "/prompt", {"raw": _deep(100000)}, 400, "json_too_deep"),
    ("prompt body too large", "POST", "/prompt", {"raw": b'{"prompt": "' + b"x" * PROMPT_LIMIT + b'"}'}, 413,
     "payload_too_large"),
    ("client_id not a string", "POST", "/prompt", {"body": {"prompt": W, "client_id": 5}}, 400, "invalid_request"),
    ("bad partial targets", "POST", "/prompt", {"body": {"prompt": W, "partial_execution_targets": "9"}}, 400,
     "invalid_request"),
    ("ui workflow with unknown node", "POST", "/prompt",
     {"body": {"prompt": {"nodes": [{"id": 1, "type": "Nope", "widgets_values": []}], "links": []}}}, 400, None),
    ("view traversal in filename", "GET", "/view?filename=../secret.txt", {}, 403, "invalid_path"),
    ("view traversal in subfolder", "GET", "/view?filename=secret.txt&subfolder=../..", {}, 403, "invalid_path"),
    ("view absolute filename", "GET", "/view?filename=/etc/passwd", {}, 403, "invalid_path"),
    ("view absolute subfolder", "GET", "/view?filename=passwd&subfolder=/etc", {}, 403, "invalid_path"),
    ("view encoded traversal", "GET", "/view?filename=..%2F..%2Fsecret.txt", {}, 403, "invalid_path"),
    ("view bad type", "GET", "/view?filename=a.png&type=models", {}, 400, "invalid_request"),
    ("view missing filename", "GET", "/view", {}, 400, "invalid_request"),
    ("view missing file", "GET", "/view?filename=nothere.png", {}, 404, "not_found"),
    ("upload too large", "POST", "/upload/image", _upload({}, {"image": ("big.png", b"x" * (UPLOAD_LIMIT + 10))}),
     413, "payload_too_large"),
    ("upload not multipart", "POST", "/upload/image", {"body": {"image": "abc"}}, 415, "unsupported_media_type"),
    ("upload traversal name", "POST", "/upload/image", _upload({}, {"image": ("../../evil.png", b"x")}), 403,
     "invalid_path"),
    ("upload absolute subfolder", "POST", "/upload/image", _upload({"subfolder": "/tmp"}, {"image": ("a.png", b"x")}),
     403, "invalid_path"),
    ("upload traversal subfolder", "POST", "/upload/image",
     _upload({"subfolder": "a/../../.."}, {"image": ("a.png", b"x")}), 403, "invalid_path"),
    ("upload without file", "POST", "/upload/image", _upload({"type": "input"}, {}), 400, "invalid_request"),
    ("upload bad type", "POST", "/upload/image", _upload({"type": "models"}, {"image": ("a.png", b"x")}), 400,
     "invalid_request"),
    ("unknown job id", "GET", "/vibeboard/jobs/does-not-exist", {}, 404, "unknown_job"),
    ("job override on unknown node", "POST", "/vibeboard/jobs", {"body": {"workflow": W, "inputs": {"42.value": 1}}},
     400, "invalid_input"),
    ("job override key without input", "POST", "/vibeboard/jobs", {"body": {"workflow": W, "inputs": {"1": 1}}},
     400, "invalid_input"),
    ("job file url not http", "POST", "/vibeboard/jobs",
     {"body": {"workflow": W, "inputs": {"1.value": {"url": "file:///etc/passwd"}}}}, 400, "invalid_input"),
    ("job bad base64", "POST", "/vibeboard/jobs",
     {"body": {"workflow": W, "inputs": {"1.value": {"base64": "!!!not base64!!!"}}}}, 400, "invalid_input"),
    ("job without workflow", "POST", "/vibeboard/jobs", {"body": {"inputs": {}}}, 400, "no_prompt"),
    ("job webhook not http", "POST", "/vibeboard/jobs", {"body": {"workflow": W, "webhook": "ftp://x"}}, 400,
     "invalid_request"),
    ("job output prefix traversal", "POST", "/vibeboard/jobs",
     {"body": {"workflow": W, "output": {"prefix": "../x"}}}, 403, "invalid_path"),
    ("history bad max_items", "GET", "/history?max_items=abc", {}, 400, "invalid_request"),
    ("queue delete not a list", "POST", "/queue", {"body": {"delete": "abc"}}, 400, "invalid_request"),
    ("unknown route", "GET", "/nope", {}, 404, "http_error"),
    ("wrong method", "DELETE", "/prompt", {}, 405, "http_error"),
    ("cross-origin request", "POST", "/prompt", {"body": {"prompt": W}, "headers": {"Origin": "http://evil.example"}},
     403, "forbidden_origin"),
]


@pytest.mark.parametrize("name,method,path,kwargs,status,error_type", CASES, ids=[c[0] for c in CASES])
def test_bad_input(server, name, method, path, kwargs, status, error_type):
    got, body, headers = http(method, server.url + path, **kwargs)
    assert got == status, (name, body)
    assert headers.get("Content-Type", "").startswith("application/json"), (name, body)
    assert isinstance(body, dict) and body["error"]["message"], body
    if error_type:
        assert body["error"]["type"] == error_type, body
    # still serving
    assert http("GET", server.url + "/prompt")[0] == 200


def test_duplicate_prompt_id_and_good_prompt_after_bad_ones(server):
    status, body, _ = http("POST", server.url + "/prompt", {"prompt": workflow(), "prompt_id": "fixed-id"})
    assert status == 200 and body["prompt_id"] == "fixed-id"
    status, body, _ = http("POST", server.url + "/prompt", {"prompt": workflow(), "prompt_id": "fixed-id"})
    assert status == 409 and body["error"]["type"] == "duplicate_prompt_id"
    assert wait_history(server.url, "fixed-id")["status"]["status_str"] == "success"


def test_validation_errors_use_comfyui_shape(server):
    bad = {**W, "1": {"class_type": "SvcConst", "inputs": {"value": 5000}}}
    status, body, _ = http("POST", server.url + "/prompt", {"prompt": bad})
    assert status == 400
    err = body["node_errors"]["1"]
    assert err["class_type"] == "SvcConst" and err["errors"][0]["type"] == "value_bigger_than_max"
    assert err["errors"][0]["extra_info"]["input_name"] == "value"


def test_token_required_and_checked(tmp_path):
    from vibeboard_runner.server import ServerConfig, VibeServer
    from vibeboard_runner.cli import main
    with pytest.raises(SystemExit, match="token"):
        VibeServer(ServerConfig(host="0.0.0.0", port=0, token=None))
    assert main(["serve", "--host", "0.0.0.0", "--port", "0"]) != 0
    srv = make_server(tmp_path, token="s3cret")
    try:
        assert http("GET", srv.url + "/queue")[0] == 401
        got, body, _ = http("GET", srv.url + "/queue", headers={"Authorization": "Bearer wrong"})
        assert got == 401 and body["error"]["type"] == "unauthorized"
        assert http("GET", srv.url + "/queue?token=s3cret")[0] == 401  # query token only for /ws and /view
        assert http("GET", srv.url + "/queue", headers={"Authorization": "Bearer s3cret"})[0] == 200
        assert http("GET", srv.url + "/vibeboard/health")[0] == 200
        import websocket
        with pytest.raises(websocket.WebSocketBadStatusException):
            WsClient(srv.url, token="wrong")
        ws = WsClient(srv.url, token="s3cret")
        auth = {"Authorization": "Bearer s3cret"}
        status, body, _ = http("POST", srv.url + "/prompt", {"prompt": workflow(), "client_id": ws.client_id},
                               headers=auth)
        assert status == 200
        ws.until_done(body["prompt_id"])
        ws.close()
    finally:
        srv.stop_thread()
