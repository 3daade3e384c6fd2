"""VibeBoard job endpoints: POST /vibeboard/jobs (workflow + input overrides + files by URL/base64 + output
target + webhook) and GET /vibeboard/jobs/{id} (status and output URLs)."""
from __future__ import annotations

import copy
import os
import urllib.parse

from aiohttp import web

from . import netpolicy
from .job_inputs import apply_job_inputs, output_spec as _output_spec  # shared with the RunPod worker
from .security import ApiError, safe_relpath

def _webhook_spec(hook):
    if hook is None:
        return None
    if isinstance(hook, str):
        hook = {"url": hook}
    if not isinstance(hook, dict) or not isinstance(hook.get("url"), str):
        raise ApiError(400, "invalid_request", "'webhook' must be a URL or {\"url\": ..., \"progress\": bool}")
    if urllib.parse.urlparse(hook["url"]).scheme not in ("http", "https"):
        raise ApiError(400, "invalid_request", "webhook URL must be http(s)")
    try:
        netpolicy.check_url(hook["url"], "webhook")
    except netpolicy.UrlRefused as exc:
        raise ApiError(403, "url_refused", str(exc))
    return {"url": hook["url"], "progress": bool(hook.get("progress", False))}


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
        job_id = await server._off(server._new_prompt_id, body.get("job_id"))
        spec = {"webhook": await server._off(_webhook_spec, body.get("webhook")),
                "output": _output_spec(body.get("output")),
                "source": "vibeboard/jobs"}
        config = server.config
        written = await server._off(
            apply_job_inputs, prompt, body.get("inputs") or {}, server.dirs["input"], job_id,
            config.max_upload_bytes, config.max_url_input_bytes, config.allow_url_inputs)
        try:
            result = await server._off(server.validate, prompt)
        except ApiError:
            for name in written:  # nothing will use them
                try:
                    os.remove(os.path.join(server.dirs["input"], name))
                except OSError:
                    pass
            raise
        spec["input_files"] = written
        client_id = body.get("client_id") if isinstance(body.get("client_id"), str) else None
        job_id, number = await server._off(server.service.submit, prompt, {}, client_id, job_id, None,
                                           bool(body.get("front")), list(result.good_outputs), spec)
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
    status = job["status"]
    if job.get("upload_state") == "pending":  # the run is over; its outputs are still being pushed
        status = "uploading"
    data = {"job_id": job["id"], "status": status, "number": job["number"],
            "queue_position": server.store.queue_position(job["id"]), "created_at": job["created_at"],
            "started_at": job["started_at"], "finished_at": job["finished_at"], "outputs": outputs,
            "error": job["error"]}
    if status == "uploading":
        data["run_status"] = job["status"]
    if job["status"] == "running":
        data["node"] = server.service.current_node
        data["partial_outputs"] = job["partial_outputs"]
    return data


def make_get_job(server):
    async def get_job(request):
        job = await server._off(server.store.get, request.match_info["job_id"])
        if job is None:
            raise ApiError(404, "unknown_job", f"no job with id {request.match_info['job_id']!r}")
        return web.json_response(await server._off(job_view, server, job))
    return get_job
