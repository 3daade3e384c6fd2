"""The job service: persistent queue → one GPU worker thread → history, output push, webhooks, WS events.

Transport-free (the aiohttp server, the RunPod handler and the tests drive it). Events go out through
`emit(event, data, sid)` with ComfyUI's routing already decided: sid None = broadcast, else one client.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import traceback
import uuid
from collections import deque
from typing import Callable, Optional

from .jobstore import Job, JobStore
from .results import path_inside
from .security import ApiError
from .publisher import OutputPublisher, public_rows
from .storage import Storage
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
                 push_temp: bool = False, stuck_after_s: float = 1800.0,
                 upload_workers: int = 2, upload_timeout_s: float = 900.0):
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
        # Health: the worker ticks `_heartbeat` every loop and on every executor event; a fault (disk full,
        # database locked) is kept until the next successful claim, so /vibeboard/health can say why.
        self.stuck_after_s = float(stuck_after_s)  # a running job silent this long counts as stuck
        self._heartbeat = time.monotonic()
        self.fault: Optional[dict] = None
        self._unfinished: "deque" = deque()  # finished jobs whose record could not be written yet
        self.publisher: Optional[OutputPublisher] = None
        if storage is not None:
            self.publisher = OutputPublisher(storage, store, self._notify, workers=upload_workers,
                                             job_timeout_s=upload_timeout_s)

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self._recovered = self.store.recover_interrupted()
        for job in self._recovered:
            log.warning("job %s was running when the server stopped; marked failed", job["id"])
        self._thread = threading.Thread(target=self._worker, name="vibeboard-gpu-worker", daemon=True)
        self._thread.start()
        if self.publisher is not None:
            self.publisher.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self.running is not None:
            self.executor.interrupt()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
        if self.publisher is not None:
            self.publisher.stop()

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
        except sqlite3.OperationalError as exc:  # disk full, database locked: the client may retry later
            self.submitted_at_monotonic.pop(prompt_id, None)
            raise ApiError(503, "queue_unavailable", f"the job queue cannot be written right now: {exc}")
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
        try:
            data = self.status_data()
        except Exception as exc:  # the queue count failed (database locked): skip one status, never the worker
            log.warning("could not count the queue for a status message: %s", exc)
            return
        self.emit("status", data, None)

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
        backoff = 0.5
        while not self._stop.is_set():
            self._heartbeat = time.monotonic()
            try:  # nothing may end this loop: a full disk or a locked database is waited out, then retried
                self._retry_unfinished()
                job = self.store.claim_next()
            except Exception as exc:
                self._note_fault("claim", exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.5
            self.fault = None
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
            except BaseException as exc:  # SystemExit from a node included: the worker outlives any job
                log.exception("worker failed on job %s", job["id"])
                self._note_fault("job", exc)
            finally:
                self.running = None
                self._interrupt_job = None
                self.current_node = None
                self.throttle.forget(job["id"])

    def _note_fault(self, where: str, exc: BaseException) -> None:
        if self.fault is None or self.fault.get("message") != str(exc):
            log.error("worker %s failed: %s: %s", where, type(exc).__name__, exc)
        self.fault = {"where": where, "type": type(exc).__name__, "message": str(exc), "since": time.time()}

    def _retry_unfinished(self) -> None:
        """Jobs that ran but whose final record failed (disk full): write them before taking new work."""
        while self._unfinished:
            job, history, status, error = self._unfinished[0]
            self._publish_and_notify(job, history, status, error, retrying=True)
            self._unfinished.popleft()

    def health(self) -> dict:
        """Worker state for /vibeboard/health and /system_stats: ok is False when it is dead, stuck or failing."""
        alive = self._thread is not None and self._thread.is_alive()
        silent = time.monotonic() - self._heartbeat
        running = self.running
        if not alive:
            state = "stopped" if self._stop.is_set() else "dead"
        elif self.fault is not None and running is None:
            state = "failing"
        elif running is not None:
            state = "stuck" if silent > self.stuck_after_s else "running"
        else:
            state = "stuck" if silent > 60.0 else "idle"  # the idle loop ticks at least every 5 s
        info = {"ok": state in ("idle", "running"), "state": state, "alive": alive,
                "seconds_since_heartbeat": round(silent, 3), "running": running["id"] if running else None,
                "node": self.current_node if running else None, "unfinished_records": len(self._unfinished),
                "uploads_pending": self.publisher.pending() if self.publisher is not None else 0}
        if self.fault is not None:
            info["fault"] = dict(self.fault)
        return info

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
        self._heartbeat = time.monotonic()
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

    def _publish_and_notify(self, job: Job, history: dict, status: str, error, retrying: bool = False) -> None:
        """Record the finished run; its outputs go to the upload workers, its webhook follows their URLs.
        A record that cannot be written (disk full) is kept and retried before the next job is taken."""
        files = files_from_ui(history.get("outputs") or {}, self.dirs)
        if not self.push_temp:
            files = [f for f in files if f["type"] != "temp"]
        spec_output = (job.get("spec") or {}).get("output") or {}
        upload = self.publisher is not None and spec_output.get("upload", True) and bool(files)
        published = [{k: f[k] for k in ("node", "filename", "subfolder", "type", "path")} for f in files]
        if not upload:
            published = public_rows(published)
        history = dict(history)
        history["vibeboard"] = {"job_id": job["id"], "files": public_rows(published),
                                "storage": self.storage.describe() if self.storage is not None else None}
        try:
            self.store.finish(job["id"], status, history, published, error, upload_pending=upload)
        except Exception as exc:
            if retrying:
                raise
            self._note_fault("finish", exc)
            self._unfinished.append((job, history, status, error))
            return
        if upload:
            self.publisher.enqueue(job["id"])
        else:
            self._notify(dict(job, status=status, published=published, error=error, finished_at=time.time()))

    def _notify(self, job: dict) -> None:
        """The job's final webhook, with its output URLs (called by the upload worker once they exist)."""
        hook = self._webhook(job)
        if not hook or self.webhooks is None:
            return
        status = job["status"]
        event = {"success": "job.completed", "interrupted": "job.interrupted"}.get(status, "job.failed")
        self.webhooks.send(hook["url"], event, {
            "job_id": job["id"], "status": status, "outputs": public_rows(job.get("published")),
            "error": _short_error(job.get("error")), "created_at": job.get("created_at"),
            "finished_at": job.get("finished_at")}, key=f"{job['id']}:{event}")


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
