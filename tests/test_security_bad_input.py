"""Hostile input gets ComfyUI's error shape (HTTP), exit code 2/3 (CLI) or {"error", "details"} (RunPod) —
never a 500, a traceback or a hang. One case per item of the hardening list."""
import json
import math

import pytest

from service_helpers import http, multipart, server_fixture, wait_history
from service_nodes import workflow

W = workflow()
HUGE = "1" + "0" * 400  # 10**400: a valid JSON integer, not a float, not an SQLite integer


server = server_fixture("hostile")


def _upload(name):
    body, ctype = multipart({}, {"image": (name, b"abc")})
    return {"raw": body, "headers": {"Content-Type": ctype}}


def _prompt_raw(prompt_json: str, extra: str = "") -> dict:
    return {"raw": ('{"prompt": ' + prompt_json + extra + "}").encode(), "headers": {"Content-Type": "application/json"}}


def _with_value(value_json: str, node_class="SvcConst", name="value") -> str:
    """W with node 1 replaced by `node_class` whose input `name` is the literal JSON text `value_json`."""
    nodes = {k: json.dumps(v) for k, v in W.items() if k != "1"}
    inputs = '{"' + name + '": ' + value_json + ('' if name == "value" else ', "value": 1') + "}"
    if node_class == "SvcSlow":
        inputs = '{"value": 1, "seconds": ' + value_json + "}"
    nodes["1"] = '{"class_type": "' + node_class + '", "inputs": ' + inputs + "}"
    return "{" + ", ".join(f'"{k}": {v}' for k, v in nodes.items()) + "}"


def _reroute_chain(n: int) -> dict:
    """UI workflow: SvcConst → n Reroutes → SvcSave (value converted to an input)."""
    nodes = [{"id": 1, "type": "SvcConst", "inputs": [], "outputs": [{"type": "INT", "links": [1]}],
              "widgets_values": [3]}]
    links = []
    for i in range(n):
        nid = 100 + i
        nodes.append({"id": nid, "type": "Reroute", "inputs": [{"name": "", "type": "*", "link": i + 1}],
                      "outputs": [{"type": "*", "links": [i + 2]}]})
        links.append([i + 1, 1 if i == 0 else nid - 1, 0, nid, 0, "INT"])
    links.append([n + 1, 100 + n - 1, 0, 9, 0, "INT"])
    nodes.append({"id": 9, "type": "SvcSave", "outputs": [],
                  "inputs": [{"name": "value", "type": "INT", "link": n + 1, "widget": {"name": "value"}}],
                  "widgets_values": [0, "json", 1, "chain"]})
    return {"nodes": nodes, "links": links, "version": 0.4}


CASES = [
    ("utf-16 body is read", "POST", "/prompt", {"raw": json.dumps({"prompt": W}).encode("utf-16")}, 200, None),
    ("latin-1 body", "POST", "/prompt", {"raw": b'{"prompt": "\xe9"}'}, 400, "invalid_json"),
    ("job inputs a list", "POST", "/vibeboard/jobs", {"body": {"workflow": W, "inputs": [1]}}, 400, "invalid_request"),
    ("job inputs a string", "POST", "/vibeboard/jobs", {"body": {"workflow": W, "inputs": "1.value=3"}}, 400,
     "invalid_request"),
    ("node inputs a list", "POST", "/prompt", {"body": {"prompt": {**W, "1": {"class_type": "SvcConst",
                                                                              "inputs": [1]}}}}, 400, "invalid_prompt"),
    ("prompt number 10**400", "POST", "/prompt", _prompt_raw(json.dumps(W), ', "number": ' + HUGE), 400,
     "invalid_request"),
    ("history max_items 10**400", "GET", "/history?max_items=" + HUGE, {}, 200, None),
    ("history offset 10**400", "GET", "/history?max_items=2&offset=" + HUGE, {}, 200, None),
    ("INT input 10**400 without a max", "POST", "/prompt", _prompt_raw(_with_value(HUGE, "SvcSlow", "value")
                                                                       .replace('"value": 1, "seconds": ' + HUGE,
                                                                                '"value": ' + HUGE + ', "seconds": 0')),
     400, "prompt_outputs_failed_validation"),
    ("FLOAT input 10**400", "POST", "/prompt", _prompt_raw(_with_value(HUGE, "SvcSlow")), 400,
     "prompt_outputs_failed_validation"),
    ("FLOAT input NaN", "POST", "/prompt", _prompt_raw(_with_value("NaN", "SvcSlow")), 400,
     "prompt_outputs_failed_validation"),
    ("FLOAT input Infinity", "POST", "/prompt", _prompt_raw(_with_value("-Infinity", "SvcSlow")), 400,
     "prompt_outputs_failed_validation"),
    ("INT input NaN", "POST", "/prompt", _prompt_raw(_with_value("NaN")), 400, "prompt_outputs_failed_validation"),
    ("NaN in extra_data", "POST", "/prompt", _prompt_raw(json.dumps(W), ', "extra_data": {"x": [NaN]}'), 400,
     "invalid_json"),
    ("upload name with NUL", "POST", "/upload/image", _upload("a\x00b.png"), 400, None),
    ("upload name of 300 characters", "POST", "/upload/image", _upload("a" * 300 + ".png"), 400, "invalid_path"),
    ("job workflow a number", "POST", "/vibeboard/jobs", {"body": {"workflow": 5}}, 400, "invalid_prompt"),
    ("job workflow a list", "POST", "/vibeboard/jobs", {"body": {"workflow": [1, 2]}}, 400, "invalid_prompt"),
    ("job workflow JSON text of a number", "POST", "/vibeboard/jobs", {"body": {"workflow": "5"}}, 400,
     "invalid_prompt"),
    ("job output a string", "POST", "/vibeboard/jobs", {"body": {"workflow": W, "output": "s3"}}, 400,
     "invalid_request"),
    ("job output.prefix an object", "POST", "/vibeboard/jobs",
     {"body": {"workflow": W, "output": {"prefix": {"a": 1}}}}, 400, "invalid_request"),
    ("job output.upload a string", "POST", "/vibeboard/jobs", {"body": {"workflow": W, "output": {"upload": "no"}}},
     400, "invalid_request"),
    ("job output.base64 (RunPod only: the job API stores outputs)", "POST", "/vibeboard/jobs",
     {"body": {"workflow": W, "output": {"base64": True}}}, 400, "invalid_request"),
    ("job_id with a slash", "POST", "/vibeboard/jobs", {"body": {"workflow": W, "job_id": "a/../b"}}, 400,
     "invalid_request"),
    ("prompt_id with a control character", "POST", "/prompt", {"body": {"prompt": W, "prompt_id": "a\nb"}}, 400,
     "invalid_request"),
]


@pytest.mark.parametrize("name,method,path,kwargs,status,error_type", CASES, ids=[c[0] for c in CASES])
def test_hostile_http_input(server, name, method, path, kwargs, status, error_type):
    got, body, headers = http(method, server.url + path, **kwargs)
    assert got == status, (name, body)
    assert headers.get("Content-Type", "").startswith("application/json"), (name, body)
    if status >= 400:
        assert set(body) == {"error", "node_errors"} and body["error"]["message"], body
        assert set(body["error"]) == {"type", "message", "details", "extra_info"}
        if error_type:
            assert body["error"]["type"] == error_type, body
    assert http("GET", server.url + "/prompt")[0] == 200


def test_long_reroute_chain_runs(server):
    status, body, _ = http("POST", server.url + "/prompt", {"prompt": _reroute_chain(1500)})
    assert status == 200, body
    assert wait_history(server.url, body["prompt_id"])["status"]["status_str"] == "success"


def test_history_is_strict_json_even_when_a_node_reports_nan(tmp_path):
    from vibeboard_runner.results import ExecutionResult
    result = ExecutionResult("p", {"1": {"class_type": "X", "inputs": {}}}, status="success",
                             outputs={"1": {"score": [float("nan"), 1.5, float("inf")]}})
    text = json.dumps(result.history_entry(1), allow_nan=False)
    assert json.loads(text)["outputs"]["1"]["score"] == [None, 1.5, None]


@pytest.mark.parametrize("content,code", [
    (json.dumps({"1": {"class_type": "SvcConst", "inputs": {"value": 1}}}).encode("utf-16"), 3),  # read, then invalid
    (b'{"1": {"class_type": "\xe9", "inputs": {}}}', 2),
    (b"5", 2),
    (b"[1, 2]", 2),
    (b'{"1": {"class_type": "VBCameraPreset", "inputs": {"speed": NaN}}, '
     b'"2": {"class_type": "VBCameraPathExport", "inputs": {"camera_path": ["1", 0]}}}', 3),
])
def test_cli_hostile_workflow_files(tmp_path, capsys, content, code):
    from vibeboard_runner.cli import main
    path = tmp_path / "w.json"
    path.write_bytes(content)
    assert main(["validate", str(path)]) == code
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("job_input,fragment", [
    ({"workflow": 5}, "must be a JSON object"),
    ({"workflow": [1, 2]}, "must be a JSON object"),
    ({"workflow": "5"}, "must be a JSON object"),
    ({"workflow": W, "inputs": [1]}, "'inputs' must be an object"),
    ({"workflow": W, "inputs": "x"}, "'inputs' must be an object"),
    ({"workflow": W, "output": "s3"}, "'output' must be an object"),
    ({"workflow": W, "output": {"upload": "yes"}}, "output.upload"),
    ({"workflow": {**W, "1": {"class_type": "SvcConst", "inputs": {"value": math.nan}}}}, "not valid"),
    ({"workflow": {**W, "1": {"class_type": "SvcConst", "inputs": {"value": 10 ** 400}}}}, "not valid"),
])
def test_runpod_hostile_input(handler_env, tmp_path, job_input, fragment):
    out = handler_env.handler({"id": "rp-bad", "input": job_input})
    assert "error" in out and fragment in out["error"], out
    assert "status" not in out
    assert not list((tmp_path / "output").rglob("*.*"))  # refused before anything ran
