"""RunPod serverless worker: job input `{workflow, inputs, output}` → embedded executor → storage → URLs.

    python -m vibeboard_runner.runpod_handler                       # on RunPod (the SDK polls for jobs)
    python -m vibeboard_runner.runpod_handler --test_input '{"input": {...}}'   # local test (or ./test_input.json)

Input:  {"workflow": API or UI JSON (object or text), "inputs": {"node_id.input": value | {"url"} |
         {"base64", "filename"}}, "images": [{"name", "image": base64 | data URI | URL}] (worker-comfyui's shape,
         runpod_io.py), "output": {"prefix": "...", "upload": true, "base64": false}}
Output: {"status": "success", "job_id", "outputs": [{node, filename, key, url, content_type, size}], "timings",
         "images": [{"filename", "type": "s3_url" | "base64", "data"}] (worker-comfyui's shape; all file kinds)}
Errors: {"error": "<message>", "details": {...}} (the SDK marks the job FAILED).
The executor and its model cache stay alive between jobs of one worker (warm starts). Storage and folders come
from the same VIBEBOARD_* environment variables as `vibeboard serve` (docs/service.md).
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Callable, Optional

log = logging.getLogger("vibeboard.runpod")

_state: dict = {}
_lock = threading.Lock()


def _runtime():
    """Registry, executor and storage, built once per worker process."""
    with _lock:
        if not _state:
            from .registry import NodeRegistry
            from .executor import Executor
            from .server import load_extra_nodes
            from .storage import storage_from_config
            env = os.environ
            dirs = {k: os.path.abspath(env.get(f"VIBEBOARD_{k.upper()}_DIR", k)) for k in ("output", "input", "temp")}
            for path in dirs.values():
                os.makedirs(path, exist_ok=True)
            registry = NodeRegistry.default(embedded=True)
            for path in filter(None, env.get("VIBEBOARD_EXTRA_NODES", "").split(os.pathsep)):
                load_extra_nodes(registry, path)
            # Jobs come from API callers: node file paths stay inside the worker's folders (as on `serve`), and
            # a serverless worker is exposed: URL inputs reach public hosts only. Applied per job (handler).
            restrict = env.get("VIBEBOARD_ALLOW_ANY_PATH", "0") not in ("1", "true", "yes")
            allow_private = env.get("VIBEBOARD_ALLOW_PRIVATE_URLS", "0") in ("1", "true", "yes")
            executor = Executor(registry, output_dir=dirs["output"], input_dir=dirs["input"], temp_dir=dirs["temp"],
                                models_dir=env.get("VIBEBOARD_MODELS_DIR"), restrict_paths=restrict)
            from .state import default_store_dir
            from .upload_journal import open_state_journal
            storage = storage_from_config(default_local_root=default_store_dir(dirs["output"]))
            # Uploads a killed worker left open (kill during a push, before it answered): aborted at this start.
            # The journal lives in the state folder: put VIBEBOARD_STATE_DIR on the network volume so the next
            # worker on that volume finds it.
            journal = open_state_journal(dirs["output"], storage)
            _state.update(registry=registry, executor=executor, storage=storage, dirs=dirs, restrict=restrict,
                          allow_private=allow_private, journal=journal)
        return _state


def _sdk_progress(job: dict) -> Optional[Callable[[dict], None]]:
    """runpod.serverless.progress_update on the platform; nothing locally (it would post to no endpoint)."""
    if not os.environ.get("RUNPOD_WEBHOOK_GET_JOB"):
        return None
    try:
        from runpod.serverless import progress_update
    except ImportError:
        return None
    return lambda update: progress_update(job, update)


def handler(job: dict, progress: Optional[Callable[[dict], None]] = None) -> dict:
    from vibeboard.common import runtime
    from . import netpolicy
    state = _runtime()
    with runtime.path_policy(state["restrict"]), netpolicy.policy(state["allow_private"]):
        return _handle(job, progress, state)


def _handle(job: dict, progress: Optional[Callable[[dict], None]], state: dict) -> dict:
    from .security import ApiError, check_graph
    from .validation import validate_prompt
    from .workflow import WorkflowFormatError, load_workflow
    from .job_inputs import apply_job_inputs, output_spec

    job_id = str(job.get("id") or f"local-{int(time.time() * 1000)}")
    data = job.get("input")
    if not isinstance(data, dict):
        return {"error": "job input must be an object {workflow, inputs, output}"}
    if data.get("workflow") is None:
        return {"error": "input.workflow is required (ComfyUI API or UI format JSON)"}
    progress = progress or _sdk_progress(job)
    try:
        workflow = data["workflow"]
        if isinstance(workflow, str):  # JSON text, never a path: job input must not read the worker's files
            from .security import parse_json
            workflow = parse_json(workflow.encode("utf-8"), 32 << 20, 256, "input.workflow")
        if not isinstance(workflow, dict):
            raise WorkflowFormatError(f"input.workflow must be a JSON object (API or UI format), got "
                                      f"{type(workflow).__name__}")
        output = output_spec(data.get("output"), inline_allowed=True)  # checked before the job runs
        prompt = load_workflow(workflow, state["registry"])
        check_graph(prompt)
        allow_urls = os.environ.get("VIBEBOARD_URL_INPUTS", "1") not in ("0", "false", "no")
        from .runpod_io import write_named_files  # worker-comfyui's {"images": [{"name", "image"}]}
        write_named_files(data.get("images"), state["dirs"]["input"], allow_urls)
        apply_job_inputs(prompt, data.get("inputs") or {}, state["dirs"]["input"], job_id, allow_urls=allow_urls)
    except WorkflowFormatError as exc:
        return {"error": f"cannot read workflow: {exc}"}
    except ApiError as exc:
        return {"error": exc.body["error"]["message"], "details": exc.body["error"]}
    except Exception as exc:  # a bug in reading the job: the caller gets the error shape, the log the traceback
        log.exception("could not prepare job %s", job_id)
        return {"error": f"cannot prepare the job: {type(exc).__name__}: {exc}",
                "details": {"type": "server_error", "exception_type": type(exc).__name__}}
    from vibeboard.common import runtime
    runtime.set_host_dirs(output=state["dirs"]["output"], input=state["dirs"]["input"], temp=state["dirs"]["temp"],
                          models=os.environ.get("VIBEBOARD_MODELS_DIR"))  # loaders validate files against these
    validation = validate_prompt(prompt, state["registry"])
    if not validation.ok:
        return {"error": "workflow is not valid:\n" + validation.summary(), "details": validation.response()}
    if validation.node_errors:  # e.g. a LoadImage naming a file the request did not send
        from .runpod_io import missing_inputs_error
        return missing_inputs_error(validation)

    last = [0.0]

    def on_event(event, info):
        if progress is None:
            return
        now = time.monotonic()
        if event == "executing" and info.get("node") is not None:
            progress({"node": info["node"], "message": f"running node {info['node']}"})
        elif event == "progress" and now - last[0] >= 1.0:  # throttled: each update is an HTTP call
            last[0] = now
            progress({"node": info.get("node"), "value": info.get("value"), "max": info.get("max")})

    result = state["executor"].execute(prompt, prompt_id=job_id, on_event=on_event)
    published, inline = [], None
    if output.get("base64"):
        from .runpod_io import inline_outputs
        try:
            inline = inline_outputs([f for f in result.output_files() if f["type"] != "temp"
                                     or output.get("include_temp")])
        except ApiError as exc:
            return {"error": exc.body["error"]["message"], "details": exc.body["error"]}
    if output.get("upload", True):
        files = [f for f in result.output_files() if f["type"] != "temp" or output.get("include_temp")]
        from .upload_journal import push_outputs_journalled  # keys journalled while they upload (kill → aborted)
        published = push_outputs_journalled(state["storage"], job_id, files, state["journal"], output.get("prefix"))
    for row in published:
        row.pop("path", None)
    if result.status != "success":
        err = result.error or {}
        message = err.get("exception_message") or err.get("error", {}).get("message") or result.status
        where = f"node {err.get('node_id')} ({err.get('node_type')}): " if err.get("node_id") else ""
        return {"error": f"{result.status}: {where}{message}", "details": err, "outputs": published}
    failed = [row for row in published if row.get("upload_error")]
    if failed:
        return {"error": f"{len(failed)} output(s) could not be uploaded: {failed[0]['upload_error']}",
                "outputs": published}
    from .runpod_io import as_worker_comfyui
    return {"status": "success", "job_id": job_id, "outputs": published,
            "images": inline if inline is not None else as_worker_comfyui(published),  # worker-comfyui's key
            "timings": {k: round(v, 4) for k, v in result.timings.items()},
            "seconds": round(result.total_seconds, 4)}


def main() -> None:
    try:
        import runpod
    except ImportError:
        sys.exit("the RunPod worker needs the runpod SDK: pip install runpod")
    runpod.serverless.start({"handler": handler})


if __name__ == "__main__":
    main()
