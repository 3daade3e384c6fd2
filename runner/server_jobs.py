"""VibeBoard job endpoints: POST /vibeboard/jobs (workflow + input overrides + files by URL/base64 + output
target + webhook) and GET /vibeboard/jobs/{id} (status and output URLs)."""
from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import json
import os
import re
import urllib.parse
import urllib.request
import uuid

from aiohttp import web

from .security import ApiError, safe_relpath

_NAME_OK = re.compile(r"[^A-Za-z0-9._-]")


def _safe_input_name(job_id: str, wanted: str) -> str:
    base = os.path.basename((wanted or "").replace("\\", "/")) or "input.bin"
    base = _NAME_OK.sub("_", base).lstrip(".") or "input.bin"
    return f"vb-{job_id[:8]}-{base[:120]}"


def _decode_base64(text: str, limit: int, key: str) -> bytes:
    if text.startswith("data:"):
        text = text.split(",", 1)[-1]
    if len(text) * 3 // 4 > limit:
        raise ApiError(413, "payload_too_large", f"input {key!r}: base64 file exceeds {limit} bytes")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(400, "invalid_input", f"input {key!r}: invalid base64 data ({exc})")


def _download(url: str, limit: int, key: str) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "vibeboard-runner/1"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            data = response.read(limit + 1)
    except Exception as exc:
        raise ApiError(400, "input_download_failed", f"input {key!r}: could not download {url}: {exc}")
    if len(data) > limit:
        raise ApiError(413, "payload_too_large", f"input {key!r}: {url} is larger than {limit} bytes")
    return data


async def materialize_inputs(server, job_id: str, prompt: dict, inputs: dict) -> list:
    """Apply {"node_id.input": value} overrides; file values ({"url"} or {"base64"}) land in the input folder
    and the input is set to the new file name. Returns the written file names."""
    if not isinstance(inputs, dict):
        raise ApiError(400, "invalid_request", "'inputs' must be an object {\"node_id.input\": value}")
    written = []
    config = server.config
    for key, value in inputs.items():
        node_id, sep, name = str(key).partition(".")
        if not sep or not name:
            raise ApiError(400, "invalid_input", f"input key {key!r} must look like 'node_id.input_name'")
        node = prompt.get(node_id)
        if node is None:
            raise ApiError(400, "invalid_input", f"input {key!r}: node {node_id!r} is not in the workflow")
        if isinstance(value, dict) and ("url" in value or "base64" in value):
            if "base64" in value:
                if not isinstance(value["base64"], str):
                    raise ApiError(400, "invalid_input", f"input {key!r}: base64 must be a string")
                data = _decode_base64(value["base64"], config.max_upload_bytes, key)
                wanted = value.get("filename") or f"{node_id}_{name}.bin"
            else:
                url = value["url"]
                scheme = urllib.parse.urlparse(url).scheme if isinstance(url, str) else ""
                if scheme not in ("http", "https"):
                    raise ApiError(400, "invalid_input", f"input {key!r}: only http(s) URLs are accepted")
                if not config.allow_url_inputs:
                    raise ApiError(403, "url_inputs_disabled", "URL inputs are disabled on this server")
                data = await asyncio.get_running_loop().run_in_executor(
                    None, _download, url, config.max_url_input_bytes, key)
                wanted = value.get("filename") or urllib.parse.urlparse(url).path
            if value.get("filename") is not None:
                safe_relpath(value["filename"], f"input {key!r} filename", allow_subdirs=False)
            file_name = _safe_input_name(job_id, wanted)
            with open(os.path.join(server.dirs["input"], file_name), "wb") as handle:
                handle.write(data)
            written.append(file_name)
            value = file_name
        node.setdefault("inputs", {})[name] = value
    return written


def _webhook_spec(hook):
    if hook is None:
        return None
    if isinstance(hook, str):
        hook = {"url": hook}
    if not isinstance(hook, dict) or not isinstance(hook.get("url"), str):
        raise ApiError(400, "invalid_request", "'webhook' must be a URL or {\"url\": ..., \"progress\": bool}")
    if urllib.parse.urlparse(hook["url"]).scheme not in ("http", "https"):
        raise ApiError(400, "invalid_request", "webhook URL must be http(s)")
    return {"url": hook["url"], "progress": bool(hook.get("progress", False))}


def _output_spec(output):
    if output is None:
        return {}
    if not isinstance(output, dict):
        raise ApiError(400, "invalid_request", "'output' must be an object {\"prefix\": ..., \"upload\": bool}")
    spec = {"upload": bool(output.get("upload", True))}
    if output.get("prefix") is not None:
        prefix = safe_relpath(str(output["prefix"]), "output.prefix")
        spec["prefix"] = prefix
    return spec


def make_post_job(server):
    async def post_job(request):
        body = await server._json(request)
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_request", "request body must be a JSON object with a 'workflow' key")
        workflow = body.get("workflow", body.get("prompt"))
        if workflow is None:
            raise ApiError(400, "no_prompt", "'workflow' is required (API or UI format, object or JSON text)")
        if isinstance(workflow, str):
            from .security import parse_json
            workflow = parse_json(workflow.encode("utf-8"), server.config.max_prompt_bytes,
                                  server.config.max_json_depth, "workflow")
        workflow = copy.deepcopy(workflow)
        prompt = server.prepare_prompt(workflow)
        job_id = server._new_prompt_id(body.get("job_id"))
        spec = {"webhook": _webhook_spec(body.get("webhook")), "output": _output_spec(body.get("output")),
                "source": "vibeboard/jobs"}
        written = await materialize_inputs(server, job_id, prompt, body.get("inputs") or {})
        try:
            result = server.validate(prompt)
        except ApiError:
            for name in written:  # nothing will use them
                try:
                    os.remove(os.path.join(server.dirs["input"], name))
                except OSError:
                    pass
            raise
        spec["input_files"] = written
        client_id = body.get("client_id") if isinstance(body.get("client_id"), str) else None
        job_id, number = server.service.submit(prompt, {}, client_id, job_id, None, bool(body.get("front")),
                                               list(result.good_outputs), spec)
        return web.json_response({"job_id": job_id, "prompt_id": job_id, "number": number, "status": "queued",
                                  "node_errors": result.node_errors,
                                  "status_url": f"/vibeboard/jobs/{job_id}"}, status=201)
    return post_job


def job_view(server, job) -> dict:
    outputs = []
    for row in job.get("published") or []:
        entry = dict(row)
        query = urllib.parse.urlencode({"filename": row.get("filename", ""), "subfolder": row.get("subfolder") or "",
                                        "type": row.get("type") or "output"})
        entry["view_url"] = f"/view?{query}"
        entry.pop("path", None)  # server-side path: not the client's business
        outputs.append(entry)
    data = {"job_id": job["id"], "status": job["status"], "number": job["number"],
            "queue_position": server.store.queue_position(job["id"]), "created_at": job["created_at"],
            "started_at": job["started_at"], "finished_at": job["finished_at"], "outputs": outputs,
            "error": job["error"]}
    if job["status"] == "running":
        data["node"] = server.service.current_node
        data["partial_outputs"] = job["partial_outputs"]
    return data


def make_get_job(server):
    async def get_job(request):
        job = server.store.get(request.match_info["job_id"])
        if job is None:
            raise ApiError(404, "unknown_job", f"no job with id {request.match_info['job_id']!r}")
        return web.json_response(job_view(server, job))
    return get_job
