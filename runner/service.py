"""The job service: persistent queue → one GPU worker thread → history, output push, webhooks, WS events.

Transport-free (the aiohttp server, the RunPod handler and the tests drive it). Events go out through
`emit(event, data, sid)` with ComfyUI's routing already decided: sid None = broadcast, else one client.
"""
from __future__ import annotations

import logging
import os
import threading
import time
import traceback
import uuid
from collections import deque
from typing import Callable, Optional

from .jobstore import Job, JobStore
from .results import path_inside
from .storage import Storage, push_outputs
from .progress_state import ProgressState
from .webhooks import ProgressThrottle, WebhookSender

log = logging.getLogger("vibeboard.service")

# ComfyUI only sends these to the prompt's own client, and not at all when the prompt has no client_id.
CLIENT_ONLY = {"execution_start", "execution_cached", "executing", "executed", "execution_success",
               "execution_error"}
ALWAYS_BROADCAST = {"execution_interrupted", "status"}
# A prompt's last messages; held until its history entry is stored, then sent in their original order.
FINAL_EVENTS = {"execution_success", "execution_error", "execution_interrupted"}


# "which files did this run write" has one home: results.files_in_ui (also behind ExecutionResult.output_files)
from .results import execution_error, files_in_ui as files_from_ui  # noqa: E402


class JobService:
    def __init__(self, executor, store: JobStore, dirs: dict, storage: Optional[Storage] = None,
                 webhooks: Optional[WebhookSender] = None, emit: Optional[Callable] = None,
                 default_webhook: Optional[str] = None, progress_interval_s: float = 1.0,
                 push_temp: bool = False):
        self.executor = executor
        self.store = store
        self.dirs = dirs  # {"output": path, "input": path, "temp": path}
        self.storage = storage
        self.webhooks = webhooks
        self.emit = emit or (lambda event, data, sid: None)
        self.default_webhook = default_webhook
        self.push_temp = push_temp
        self.throttle = ProgressThrottle(progress_interval_s)
        self._progress_state: Optional[ProgressState] = None  # per running prompt, for the ws message
        self.running: Optional[Job] = None
        self._interrupt_job: Optional[str] = None  # id of the running job an interrupt was asked for
        self.current_node: Optional[str] = None
        self.submitted_at_monotonic: dict = {}  # job id → perf_counter at submit (removed when the job starts)
        self.start_log: "deque" = deque(maxlen=10000)  # (job id, submitted, started) for latency stats
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._recovered: list = []

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self._recovered = self.store.recover_interrupted()
        for job in self._recovered:
            log.warning("job %s was running when the server stopped; marked failed", job["id"])
        self._thread = threading.Thread(target=self._worker, name="vibeboard-gpu-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self.running is not None:
            self.executor.interrupt()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)

    # --- queue API -------------------------------------------------------------------------------
    def submit(self, prompt: dict, extra_data: Optional[dict] = None, client_id: Optional[str] = None,
               prompt_id: Optional[str] = None, number: Optional[float] = None, front: bool = False,
               outputs_to_execute: Optional[list] = None, spec: Optional[dict] = None) -> tuple:
        prompt_id = prompt_id or str(uuid.uuid4())
        extra_data = dict(extra_data or {})
        if client_id:
            extra_data["client_id"] = client_id
        if number is None:
            number = self.store.next_number(front)
        self.submitted_at_monotonic[prompt_id] = time.perf_counter()  # before the insert: the worker may be quick
        try:
            self.store.add(prompt_id, prompt, extra_data, list(outputs_to_execute or []), number,
                           client_id=client_id, spec=spec)
        except Exception:
            self.submitted_at_monotonic.pop(prompt_id, None)
            raise
        self._wake.set()
        self.broadcast_status()
        return prompt_id, number

    def queue_remaining(self) -> int:
        return self.store.count("queued", "running")

    def status_data(self) -> dict:
        return {"status": {"exec_info": {"queue_remaining": self.queue_remaining()}}}

    def broadcast_status(self) -> None:
        self.emit("status", self.status_data(), None)

    def interrupt(self, prompt_id: Optional[str] = None) -> bool:
        running = self.running
        if running is None or (prompt_id and running["id"] != prompt_id):
            return False
        self._interrupt_job = running["id"]  # re-applied at execution_start: the executor resets its flag
        self.executor.interrupt()
        return True

    def delete_queued(self, ids=None) -> int:
        removed = self.store.delete_queued(ids)
        for job_id in (list(self.submitted_at_monotonic) if ids is None else ids):
            self.submitted_at_monotonic.pop(job_id, None)
        if removed:
            self.broadcast_status()
        return removed

    # --- worker ----------------------------------------------------------------------------------
    def _worker(self) -> None:
        for job in self._recovered:  # push what the killed job had written, tell its webhook
            try:
                self._publish_and_notify(job, job["history"], "error", job["error"])
            except Exception:
                log.exception("could not publish recovered job %s", job["id"])
        self._recovered = []
        while not self._stop.is_set():
            job = self.store.claim_next()
            if job is None:
                self._wake.wait(timeout=0.5)
                self._wake.clear()
                continue
            self.start_log.append((job["id"], self.submitted_at_monotonic.pop(job["id"], None), time.perf_counter()))
            self._interrupt_job = None
            self.running = job
            self.broadcast_status()
            try:
                self._run_job(job)
            except Exception:
                log.exception("worker failed on job %s", job["id"])
            finally:
                self.running = None
                self._interrupt_job = None
                self.current_node = None
                self.throttle.forget(job["id"])

    def _route(self, job: Job, event: str, data: dict) -> None:
        client = job.get("client_id")
        if event in ALWAYS_BROADCAST:
            self.emit(event, data, None)
        elif event in CLIENT_ONLY:
            if client:
                self.emit(event, data, client)
        else:  # progress, progress_state, custom events: to the client, broadcast when there is none
            self.emit(event, data, client)

    def _on_event(self, job: Job, held: list, event: str, data: dict) -> None:
        if event == "execution_start" and self._interrupt_job == job["id"]:
            self.executor.interrupt()  # asked for after the claim but before the executor reset its flag
        if event == "execution_start" or self._progress_state is None or self._progress_state.prompt_id != job["id"]:
            self._progress_state = ProgressState(job["id"])
        state = self._progress_state.update(event, data)
        if state is not None:
            self._route(job, "progress_state", state)
        if event in FINAL_EVENTS or (event == "executing" and data.get("node") is None):
            held.append((event, data))  # sent after history is stored (and outputs pushed): clients fetch it next
            return
        if event == "executing":
            self.current_node = data.get("node")
        elif event == "executed" and data.get("output"):
            try:
                self.store.record_node_output(job["id"], str(data.get("node")), data["output"])
            except Exception:
                log.exception("could not record output of node %s", data.get("node"))
        elif event == "progress":
            self._progress_webhook(job, data)
        self._route(job, event, data)

    def _progress_webhook(self, job: Job, data: dict) -> None:
        hook = self._webhook(job)
        if hook and hook.get("progress") and self.webhooks and self.throttle.due(job["id"]):
            self.webhooks.send(hook["url"], "job.progress",
                               {"job_id": job["id"], "status": "running", "node": data.get("node"),
                                "value": data.get("value"), "max": data.get("max")}, essential=False)

    def _webhook(self, job: Job) -> Optional[dict]:
        hook = (job.get("spec") or {}).get("webhook") or self.default_webhook
        if isinstance(hook, str):
            hook = {"url": hook}
        return hook if hook and hook.get("url") else None

    def _run_job(self, job: Job) -> None:
        held: list = []
        outputs = job["outputs_to_execute"] or None
        try:
            result = self.executor.execute(job["prompt"], prompt_id=job["id"], extra_data=job["extra_data"],
                                           outputs=outputs, client_id=job.get("client_id"),
                                           on_event=lambda e, d: self._on_event(job, held, e, d))
            status = result.status
            history = result.history_entry(job["number"])
            error = result.error if status != "success" else None
            if status == "invalid":  # valid at submit, not any more (an input file went away while queued)
                error = _invalid_as_execution_error(job["id"], result)
                history["status"]["messages"].append(["execution_error", error])
                held.insert(0, ("execution_error", error))
        except Exception as exc:  # executor bug or host failure: still a clean error record
            tb = traceback.format_exc()
            log.error("job %s crashed: %s", job["id"], tb)
            error = execution_error(job["id"], f"{type(exc).__name__}: {exc}", type(exc).__name__,
                                    node_id=self.current_node, traceback=tb.splitlines())
            held.insert(0, ("execution_error", error))  # before the final "executing": node null
            status = "error"
            partial = (self.store.get(job["id"]) or {}).get("partial_outputs") or {}
            history = {"prompt": job.queue_item, "outputs": partial,
                       "status": {"status_str": "error", "completed": False,
                                  "messages": [["execution_error", error]]}, "meta": {}}
            if not any(event == "executing" for event, _data in held):
                held.append(("executing", {"node": None, "prompt_id": job["id"]}))
        if history.get("prompt") is None or not isinstance(history.get("prompt"), list):
            history["prompt"] = job.queue_item
        try:
            self._publish_and_notify(job, history, status, error)
        finally:  # clients waiting for the end must hear it even if publishing failed
            # ComfyUI's order: the final event, then `status` (task_done), then `executing {node: null}`.
            # Clients that stop at the first `queue_remaining: 0` would otherwise read a failure as a success.
            finals = [(e, d) for e, d in held if e in FINAL_EVENTS]
            for event, data in finals:
                self._route(job, event, data)
            self.broadcast_status()
            for event, data in held:
                if event not in FINAL_EVENTS:
                    self._route(job, event, data)

    def _publish_and_notify(self, job: Job, history: dict, status: str, error) -> None:
        files = files_from_ui(history.get("outputs") or {}, self.dirs)
        if not self.push_temp:
            files = [f for f in files if f["type"] != "temp"]
        spec_output = (job.get("spec") or {}).get("output") or {}
        published = []
        if self.storage is not None and spec_output.get("upload", True):
            published = push_outputs(self.storage, job["id"], files, prefix=spec_output.get("prefix"))
        else:
            published = [{k: f[k] for k in ("node", "filename", "subfolder", "type")} for f in files]
        history = dict(history)
        history["vibeboard"] = {"job_id": job["id"], "files": published,
                                "storage": self.storage.describe() if self.storage is not None else None}
        self.store.finish(job["id"], status, history, published, error)
        hook = self._webhook(job)
        if hook and self.webhooks is not None:
            event = {"success": "job.completed", "interrupted": "job.interrupted"}.get(status, "job.failed")
            public = [{k: v for k, v in row.items() if k != "path"} for row in published]  # no server paths
            self.webhooks.send(hook["url"], event, {
                "job_id": job["id"], "status": status, "outputs": public, "error": _short_error(error),
                "created_at": job.get("created_at"), "finished_at": time.time()})


def _invalid_as_execution_error(job_id: str, result) -> dict:
    """ComfyUI clients learn about failures from execution_error: give a run-time validation failure that shape."""
    node_errors = result.node_errors or {}
    node_id = next(iter(node_errors), None)
    return execution_error(job_id, result.validation_summary or "the prompt is no longer valid", "ValidationError",
                           node_id=node_id, node_type=node_errors[node_id].get("class_type") if node_id else None,
                           node_errors=node_errors)


def _short_error(error) -> Optional[dict]:
    """Webhook payloads carry the message, not the full traceback."""
    if not error:
        return None
    if isinstance(error, dict) and "exception_message" in error:
        return {k: error.get(k) for k in ("node_id", "node_type", "exception_type", "exception_message")}
    return error
