"""`vibeboard serve --farm ADDRESS`: the same ComfyUI-compatible API and SQLite queue/history, but each
prompt runs as a Temporal RenderJob on the farm's GPU workers instead of in this process.

FarmJobService keeps JobService's queue, history, webhooks and websocket routing and only changes who
executes: many prompts are in flight at once (one thread each, waiting on its workflow), FarmExecutor turns
the workers' heartbeats back into the executor's events, and a restarted front re-attaches to the
workflows still running (workflow id = job id) instead of marking them failed.
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from typing import Optional

from ..results import ExecutionResult
from ..service import FINAL_EVENTS, JobService
from . import gpucost
from .routing import job_need
from .workflows import CONTROL_QUEUE, DEFAULTS

log = logging.getLogger("vibeboard.farm.front")
POLL_S = 0.25           # progress poll of a job whose client listens on /ws
POLL_NO_CLIENT_S = 1.0  # a job nobody watches (scripts polling /history): fewer Temporal calls


def config_from_env(env=None) -> dict:
    env = os.environ if env is None else env
    names = {"heartbeat_s": "VIBEBOARD_FARM_HEARTBEAT_S", "fallback_s": "VIBEBOARD_FARM_FALLBACK_S",
             "max_attempts": "VIBEBOARD_FARM_MAX_ATTEMPTS", "job_timeout_s": "VIBEBOARD_FARM_JOB_TIMEOUT_S",
             "stale_s": "VIBEBOARD_FARM_STALE_S"}
    cfg = dict(DEFAULTS)
    for key, name in names.items():
        if env.get(name):
            cfg[key] = float(env[name])
    if env.get("VIBEBOARD_FARM_DEFAULT_CLASS"):
        cfg["default_class"] = env["VIBEBOARD_FARM_DEFAULT_CLASS"]
    return cfg


class FarmBackend:
    """A Temporal client on its own event loop thread (the job service's threads are synchronous)."""

    def __init__(self, address: str, connection: Optional[dict] = None, host_control: bool = True):
        self.address = address
        if connection is None:  # serve --farm: security settings from the environment (docs/farm.md)
            connection = {"namespace": os.environ.get("VIBEBOARD_FARM_NAMESPACE", "default"),
                          "api_key": os.environ.get("VIBEBOARD_FARM_API_KEY"),
                          "tls_cert": os.environ.get("VIBEBOARD_FARM_TLS_CERT"),
                          "tls_key": os.environ.get("VIBEBOARD_FARM_TLS_KEY"),
                          "tls_ca": os.environ.get("VIBEBOARD_FARM_TLS_CA")}
        self.connection = dict(connection)
        self.host_control = host_control
        self.loop = asyncio.new_event_loop()
        self.client = None
        self._thread = threading.Thread(target=self.loop.run_forever, name="vibeboard-farm-client", daemon=True)
        self._control = None

    def start(self, timeout_s: float = 30.0) -> "FarmBackend":
        from . import connect
        self._thread.start()
        try:
            self.client = self.call(connect(self.address, **self.connection), timeout_s)
        except Exception as exc:
            raise SystemExit(f"vibeboard: cannot reach the farm's Temporal server at {self.address}: {exc}")
        if self.host_control:  # the front can run workflows + routing too (workers do as well)
            from .routing import control_worker

            async def build():  # a Temporal worker must be made inside its event loop
                return control_worker(self.client, identity=f"front-{os.getpid()}")
            self._control = self.call(build(), timeout_s)
            asyncio.run_coroutine_threadsafe(self._control.run(), self.loop)
        return self

    def call(self, coro, timeout_s: Optional[float] = None):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def stop(self) -> None:
        if self._control is not None:
            try:
                self.call(self._control.shutdown(), 15)
            except Exception:
                pass
        self.loop.call_soon_threadsafe(self.loop.stop)


def medic_diagnosis(error: dict) -> Optional[dict]:
    """apiMedic's reading of a failed farm job (kind, retryable, fix hint), when Script Lab is installed; the
    farm itself never re-runs OOM / bad-input failures, so the hint is what a person or the medic acts on."""
    try:
        from dataclasses import asdict
        from vibeboard.scriptlab.medic import classify
    except Exception:
        return None
    try:
        return asdict(classify(error))
    except Exception as exc:  # a diagnosis must never hide the failure itself
        return {"kind": "unknown", "detail": f"apiMedic failed: {exc}", "retryable": False, "fix_hint": ""}


class FarmResult(ExecutionResult):
    farm: dict = None

    def history_entry(self, number: int = 0) -> dict:
        entry = super().history_entry(number)
        entry["farm"] = self.farm or {}
        return entry


class FarmExecutor:
    """Executor-shaped: execute() blocks until the job's workflow ends, replaying its events."""

    def __init__(self, backend: FarmBackend, store, dirs: dict, config: Optional[dict] = None,
                 ledger: Optional[str] = None):
        self.backend = backend
        self.store = store
        self.dirs = dirs
        self.config = config or config_from_env()
        self.ledger = ledger or gpucost.ledger_path(dirs["output"])

    def interrupt(self, job_id: Optional[str] = None) -> None:
        ids = [job_id] if job_id else [j["id"] for j in self.store.by_status("running")]
        for jid in ids:
            try:
                self.backend.call(self.backend.client.get_workflow_handle(jid).cancel(), 15)
            except Exception as exc:
                log.warning("could not cancel farm job %s: %s", jid, exc)

    def clear_cache(self) -> None:  # POST /free: the workers own their caches
        pass

    def execute(self, prompt: dict, prompt_id: Optional[str] = None, extra_data: Optional[dict] = None,
                outputs=None, on_event=None, client_id: Optional[str] = None) -> ExecutionResult:
        stored = self.store.get(prompt_id) if prompt_id else None
        job = {"job_id": prompt_id, "prompt": prompt, "extra_data": extra_data or {}, "outputs": list(outputs or []),
               "client_id": client_id, "need": job_need(prompt, extra_data), "config": self.config,
               "output": ((stored or {}).get("spec") or {}).get("output") or {}}
        on_event = on_event or (lambda event, data: None)
        raw = self.backend.call(self._run(job, on_event))
        result = FarmResult(prompt_id=prompt_id, prompt=prompt, extra_data=extra_data or {}, dirs=self.dirs)
        for key in ("status", "outputs", "error", "node_errors", "validation_summary", "executed", "cached",
                    "timings", "messages", "outputs_to_execute", "total_seconds"):
            if raw.get(key) is not None:
                setattr(result, key, raw[key])
        result.farm = raw.get("farm") or {}
        if result.status == "error" and result.error:
            result.farm["medic"] = medic_diagnosis(result.error)
        if result.farm.get("nodes") is not None:
            try:
                gpucost.record_job(self.ledger, prompt_id, extra_data or {}, client_id, result.status, result.farm,
                                   job["need"]["models"])
            except Exception:
                log.exception("could not write the GPU cost of job %s to the ledger", prompt_id)
        return result

    # --- the workflow ----------------------------------------------------------------------------
    async def _run(self, job: dict, on_event) -> dict:
        from temporalio.client import WorkflowFailureError
        from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
        from temporalio.exceptions import WorkflowAlreadyStartedError
        from .workflows import RenderJob
        client = self.backend.client
        try:
            handle = await client.start_workflow(
                RenderJob.run, job, id=job["job_id"], task_queue=CONTROL_QUEUE,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE)  # a job never runs twice to completion
        except WorkflowAlreadyStartedError:  # finished while the front was down: read its result
            handle = client.get_workflow_handle(job["job_id"])
        state = {"attempt": None, "seq": -1}
        waiter = asyncio.ensure_future(handle.result())
        poll_s = POLL_S if job.get("client_id") else POLL_NO_CLIENT_S
        while not waiter.done():
            await asyncio.wait([waiter], timeout=poll_s)
            if waiter.done():
                break
            try:
                description = await handle.describe()
                for pending in description.raw_description.pending_activities:
                    if pending.heartbeat_details.payloads:
                        details = await client.data_converter.decode(pending.heartbeat_details.payloads)
                        if details and isinstance(details[0], dict):
                            self._forward(state, details[0], on_event, finals=False)
            except Exception as exc:  # progress is best effort; the result is not
                log.debug("describe %s failed: %s", job["job_id"], exc)
        try:
            raw = waiter.result()
        except WorkflowFailureError as failure:
            raw = self._failed(job, failure)
        if raw.get("events"):
            self._forward(state, {"attempt": (raw.get("farm") or {}).get("attempt"), "events": raw["events"]},
                          on_event, finals=True, farm=raw.get("farm"))
        return raw

    def _forward(self, state: dict, details: dict, on_event, finals: bool, farm: Optional[dict] = None) -> None:
        if details.get("attempt") != state["attempt"]:
            state["attempt"], state["seq"] = details.get("attempt"), -1  # a new attempt starts from its beginning
        for seq, event, data in details.get("events") or []:
            if seq <= state["seq"]:
                continue
            final = event in FINAL_EVENTS or (event == "executing" and data.get("node") is None)
            if final and not finals:
                return  # the end of an attempt is only told from the workflow's result
            state["seq"] = seq
            if event == "execution_success" and farm:
                data = {**data, "vibeboard_cost": {"cost_usd": farm.get("cost_usd"),
                                                   "gpu_seconds": farm.get("gpu_seconds"),
                                                   "worker": farm.get("worker"), "gpu_class": farm.get("gpu_class")}}
            on_event(event, data)

    def _failed(self, job: dict, failure) -> dict:
        from temporalio.exceptions import ApplicationError, CancelledError
        cause = failure.cause
        tries = []
        worker_result = None
        if isinstance(cause, ApplicationError):
            for detail in cause.details or ():
                if isinstance(detail, dict) and "status" in detail:
                    worker_result = detail
                elif isinstance(detail, dict) and "tries" in detail:
                    tries = detail["tries"]
        if worker_result is not None:
            worker_result.setdefault("farm", {}).update({"tries": tries, "failure_type": cause.type})
            return worker_result
        interrupted = isinstance(cause, CancelledError)
        error = {"prompt_id": job["job_id"], "node_id": None, "node_type": None, "executed": [],
                 "exception_message": str(cause or failure), "traceback": [], "current_inputs": {},
                 "current_outputs": [],
                 "exception_type": "Interrupted" if interrupted else f"farm.{getattr(cause, 'type', None) or 'Failure'}",
                 "timestamp": int(time.time() * 1000)}
        status = "interrupted" if interrupted else "error"
        event = "execution_interrupted" if interrupted else "execution_error"
        return {"status": status, "outputs": {}, "error": error, "messages": [[event, error]],
                "events": [[0, event, error], [1, "executing", {"node": None, "prompt_id": job["job_id"]}]],
                "farm": {"tries": tries, "failure_type": getattr(cause, "type", None), "attempt": "final"}}


class FarmJobService(JobService):
    """JobService with many jobs in flight: per-thread job state, workflows instead of the local executor."""

    _THREAD_STATE = ("running", "current_node", "_progress_state", "_interrupt_job")

    def __init__(self, base: JobService, executor: FarmExecutor, max_in_flight: int = 64):
        state = {k: v for k, v in base.__dict__.items() if k not in self._THREAD_STATE}
        self.__dict__.update(state)
        self._local = threading.local()
        self.executor = executor
        self.max_in_flight = max_in_flight
        self._threads: set = set()
        self._resume: list = []
        self._farm_files: dict = {}  # job id → the worker's pushed output rows, while its record is written

    def __getattr__(self, name):
        if name in FarmJobService._THREAD_STATE:
            return getattr(self.__dict__["_local"], name, None)
        raise AttributeError(name)

    def __setattr__(self, name, value):
        if name in FarmJobService._THREAD_STATE:
            setattr(self.__dict__["_local"], name, value)
        else:
            object.__setattr__(self, name, value)

    def start(self) -> None:
        # Jobs `running` when the front stopped are still running on the farm: re-attach, never re-run.
        self._resume = self.store.by_status("running")
        self._thread = threading.Thread(target=self._worker, name="vibeboard-farm-dispatch", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)

    def interrupt(self, prompt_id: Optional[str] = None) -> bool:
        running = [j["id"] for j in self.store.by_status("running")]
        if prompt_id and prompt_id not in running or not running:
            return False
        self.executor.interrupt(prompt_id)
        return True

    def _publish_and_notify(self, job, history: dict, status: str, error, retrying: bool = False) -> None:
        """As JobService, but the outputs were pushed by the worker: its rows (with URLs) become the job's
        published outputs (GET /vibeboard/jobs/{id}) and its webhook's."""
        files = (history.get("farm") or {}).get("files")
        if files is not None:
            self._farm_files[job["id"]] = files
        try:
            super()._publish_and_notify(job, history, status, error, retrying)
            if files is not None:
                self.store.set_published(job["id"], files)
        finally:
            self._farm_files.pop(job["id"], None)

    def _notify(self, job: dict) -> None:
        files = self._farm_files.get(job["id"])
        super()._notify(dict(job, published=files) if files is not None else job)

    def _spawn(self, job) -> None:
        thread = threading.Thread(target=self._job_thread, args=(job,), name=f"vibeboard-farm-{job['id'][:8]}",
                                  daemon=True)
        self._threads.add(thread)
        thread.start()

    def _job_thread(self, job) -> None:
        self.running = job
        try:
            self._run_job(job)
        except Exception:
            log.exception("farm job %s failed in the front", job["id"])
        finally:
            self.running = None
            self.throttle.forget(job["id"])
            self._wake.set()

    def _worker(self) -> None:
        for job in self._resume:
            self._spawn(job)
        self._resume = []
        while not self._stop.is_set():
            self._heartbeat = time.monotonic()  # /vibeboard/health: the dispatcher is alive
            self._threads = {t for t in self._threads if t.is_alive()}
            try:  # a locked or full database is waited out, as in JobService
                self._retry_unfinished()
                job = self.store.claim_next() if len(self._threads) < self.max_in_flight else None
            except Exception as exc:
                self._note_fault("claim", exc)
                self._stop.wait(1.0)
                continue
            if job is None:
                self._wake.wait(timeout=0.5)
                self._wake.clear()
                continue
            self.start_log.append((job["id"], self.submitted_at_monotonic.pop(job["id"], None), time.perf_counter()))
            self.broadcast_status()
            self._spawn(job)


def attach_farm(server, address: str, connection: Optional[dict] = None, config: Optional[dict] = None,
                host_control: bool = True):
    """Turn a built VibeServer into the farm's front (call before it starts serving)."""
    from . import require_temporal
    require_temporal()
    backend = FarmBackend(address, connection, host_control=host_control).start()
    executor = FarmExecutor(backend, server.store, server.dirs, config)
    service = FarmJobService(server.service, executor)
    # The workers push outputs to R2/S3 themselves (history lists them under farm.files): no upload here.
    service.storage = None
    service.publisher = None
    server.service = service
    server.farm = backend
    return server
