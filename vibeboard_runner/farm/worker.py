"""`vibeboard worker --farm ADDRESS`: one GPU pod of the farm. It dials out to Temporal only and polls
  - its host queue (jobs routed to it because it holds their models),
  - its GPU-class queue (jobs any worker of the class can take; polled only while the GPU is idle),
  - the control queue (workflows and routing; any farm process can host these).
One job at a time runs on the GPU with the embedded executor. Every 0.25 s the activity heartbeats the
job's executor events (node progress) — the front forwards them to its websocket clients — and the
heartbeat timeout tells Temporal a killed pod is gone, so the job runs again elsewhere.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import socket
import threading
import time
from typing import Optional

from . import gpucost
from .resident import models as resident_models
from .workflows import REGISTRY_ID, RUN_ACTIVITY, CONTROL_QUEUE, class_queue, host_queue

log = logging.getLogger("vibeboard.farm.worker")

OOM_MARKERS = ("OutOfMemoryError", "out of memory", "MemoryError")
BAD_INPUT_TYPES = ("ValueError", "TypeError", "KeyError", "FileNotFoundError", "ValidationError",
                   "PathNotAllowed", "UnicodeDecodeError")
HEARTBEAT_TAIL = 200     # events carried by each heartbeat (the final result carries them all)
MAX_RESULT_EVENTS = 5000


def classify_failure(result: dict) -> tuple:
    """(error type, non_retryable) for a failed run: OutOfMemory and BadInput are not retried."""
    if result.get("status") == "invalid":
        return "BadInput", True
    error = result.get("error") or {}
    text = f"{error.get('exception_type', '')} {error.get('exception_message', '')}"
    if any(marker in text for marker in OOM_MARKERS):
        return "OutOfMemory", True
    if str(error.get("exception_type", "")).split(".")[-1] in BAD_INPUT_TYPES:
        return "BadInput", True
    return "NodeError", False


class EventLog:
    """The executor's events of one attempt, numbered, shared between the executor thread and the heartbeat."""

    def __init__(self, usd_per_hour: Optional[float] = None):
        self.events: list = []
        self._lock = threading.Lock()
        self.usd_per_hour = usd_per_hour
        self._node_started: dict = {}

    def add(self, event: str, data: dict) -> None:
        data = json.loads(json.dumps(data, default=str))  # what crosses Temporal must be plain JSON
        node = data.get("node")
        if event == "executing" and node is not None:
            self._node_started[node] = time.perf_counter()
        elif event == "executed" and node in self._node_started:  # the node's cost rides on its ws event
            seconds = time.perf_counter() - self._node_started.pop(node)
            data["vibeboard_cost"] = {"gpu_seconds": round(seconds, 6),
                                      "cost_usd": gpucost.node_cost(seconds, self.usd_per_hour)}
        with self._lock:
            self.events.append([len(self.events), event, data])

    def tail(self, count: int = HEARTBEAT_TAIL) -> list:
        with self._lock:
            return list(self.events[-count:])

    def all(self) -> list:
        with self._lock:
            events = list(self.events)
        if len(events) > MAX_RESULT_EVENTS:  # keep every structural event; drop the oldest progress ticks
            keep = [e for e in events if e[1] != "progress"]
            room = max(0, MAX_RESULT_EVENTS - len(keep))
            progress = [e for e in events if e[1] == "progress"][-room:] if room else []
            events = sorted(keep + progress, key=lambda e: e[0])
        return events


class GpuState:
    def __init__(self):
        self.lock = asyncio.Lock()
        self.busy = False
        self.class_reserved = False
        self.jobs = 0


def _idle_gpu_slots(gpu: GpuState):
    """The class queue's slot supplier: poll for shared work only while this GPU is idle."""
    from temporalio.worker import CustomSlotSupplier, SlotPermit

    class IdleGpuSlots(CustomSlotSupplier):
        async def reserve_slot(self, ctx):
            while gpu.busy or gpu.class_reserved:
                await asyncio.sleep(0.05)
            gpu.class_reserved = True
            return SlotPermit()

        def try_reserve_slot(self, ctx):
            return None  # no eager tasks: they would bypass the idle check

        def mark_slot_used(self, ctx):
            pass

        def release_slot(self, ctx):
            gpu.class_reserved = False

    return IdleGpuSlots()


class FarmWorker:
    def __init__(self, client, executor, worker_id: str, gpu_class: str, usd_per_hour: Optional[float] = None,
                 vram_gb: Optional[float] = None, storage=None, advertise_s: float = 10.0, host_control: bool = True,
                 push_temp: bool = False, journal=None):
        self.client = client
        self.executor = executor
        # Output keys are journalled while they upload (upload_journal.py). Opened once per worker process, here
        # at its start, which aborts what a worker killed mid-push on this state folder left open.
        # (Never closed: rows are committed as they are written, and a push may still run while the worker stops.)
        if journal is None and storage is not None:
            from vibeboard_runner.upload_journal import open_state_journal
            journal = open_state_journal(executor.dirs["output"], storage)
        self.journal = journal
        self.worker_id = worker_id
        self.gpu_class = gpu_class
        self.usd_per_hour = usd_per_hour
        self.vram_gb = vram_gb
        self.storage = storage
        self.advertise_s = advertise_s
        self.host_control = host_control
        self.push_temp = push_temp
        self.gpu = GpuState()
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="vibeboard-farm-gpu")
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._workers: list = []

    # --- advertising -----------------------------------------------------------------------------
    def info(self) -> dict:
        return {"worker_id": self.worker_id, "gpu_class": self.gpu_class, "vram_gb": self.vram_gb,
                "models": resident_models().names(), "busy": self.gpu.busy, "jobs": self.gpu.jobs,
                "usd_per_hour": self.usd_per_hour, "host": socket.gethostname(), "pid": os.getpid()}

    async def advertise(self) -> None:
        from .workflows import FarmRegistry
        from temporalio.common import WorkflowIDConflictPolicy
        try:
            await self.client.start_workflow(FarmRegistry.run, None, id=REGISTRY_ID, task_queue=CONTROL_QUEUE,
                                             start_signal="advertise", start_signal_args=[self.info()],
                                             id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)
        except Exception as exc:  # the farm keeps working on the class queue without it
            log.warning("could not advertise to the farm registry: %s", exc)

    def _advertise_soon(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self.advertise()))

    async def _advertise_loop(self) -> None:
        while True:
            await self.advertise()
            await asyncio.sleep(self.advertise_s)

    # --- the job ---------------------------------------------------------------------------------
    def _execute(self, job: dict, events: EventLog) -> dict:
        from vibeboard_runner.service import files_from_ui
        from vibeboard_runner.upload_journal import push_outputs_journalled
        loads_before = len(resident_models().loads)
        started = time.perf_counter()
        result = self.executor.execute(job["prompt"], prompt_id=job["job_id"], extra_data=job.get("extra_data") or {},
                                       outputs=job.get("outputs") or None, client_id=job.get("client_id"),
                                       on_event=events.add)
        wall = time.perf_counter() - started
        farm = {"worker": self.worker_id, "gpu_class": self.gpu_class, "attempt": job.get("attempt", 1),
                "loaded": resident_models().loads[loads_before:], "resident": resident_models().names(),
                "wall_seconds": round(wall, 6),
                **gpucost.job_costs(job["prompt"], result.timings, self.usd_per_hour)}
        files = files_from_ui(result.outputs, self.executor_dirs())
        if not self.push_temp:
            files = [f for f in files if f["type"] != "temp"]
        farm["storage_bytes"] = sum(os.path.getsize(f["path"]) for f in files if os.path.isfile(f["path"]))
        spec_output = job.get("output") or {}
        if self.storage is not None and spec_output.get("upload", True):
            published = push_outputs_journalled(self.storage, job["job_id"], files, self.journal,
                                                prefix=spec_output.get("prefix"))
            farm["storage"] = self.storage.describe()
        else:
            published = [{k: f[k] for k in ("node", "filename", "subfolder", "type")} for f in files]
        farm["files"] = [{k: v for k, v in row.items() if k != "path"} for row in published]
        return {"status": result.status, "outputs": result.outputs, "messages": result.messages,
                "error": result.error, "node_errors": result.node_errors,
                "validation_summary": result.validation_summary, "executed": result.executed,
                "cached": result.cached, "timings": result.timings, "total_seconds": result.total_seconds,
                "outputs_to_execute": result.outputs_to_execute, "events": events.all(),
                "farm": json.loads(json.dumps(farm, default=str))}

    def executor_dirs(self) -> dict:
        return dict(self.executor.dirs)

    async def run_prompt(self, job: dict) -> dict:
        from temporalio import activity
        from temporalio.exceptions import ApplicationError
        events = EventLog(self.usd_per_hour)
        details = lambda: {"worker": self.worker_id, "attempt": job.get("attempt", 1), "events": events.tail()}
        activity.heartbeat({"worker": self.worker_id, "attempt": job.get("attempt", 1), "events": [],
                            "waiting": self.gpu.busy})
        while self.gpu.lock.locked():  # keep heartbeating while an earlier job holds the GPU: a silent
            activity.heartbeat({"worker": self.worker_id, "attempt": job.get("attempt", 1), "events": [],
                                "waiting": True})  # wait would read as a dead pod and run the job twice
            await asyncio.sleep(0.25)
        await self.gpu.lock.acquire()  # returns at once: nothing ran between the check and here
        try:
            self.gpu.busy = True
            self.gpu.jobs += 1
            await self.advertise()
            future = asyncio.get_running_loop().run_in_executor(self.pool, self._execute, job, events)
            while True:
                try:
                    result = await asyncio.wait_for(asyncio.shield(future), timeout=0.25)
                    break
                except asyncio.TimeoutError:
                    activity.heartbeat(details())
                except asyncio.CancelledError:  # the front interrupted the job (workflow cancelled)
                    self.executor.interrupt()
                    await asyncio.shield(future)
                    raise
        finally:
            self.gpu.busy = False
            self.gpu.lock.release()
            asyncio.ensure_future(self.advertise())
        if result["status"] in ("success",):
            return result
        if result["status"] == "interrupted":
            raise asyncio.CancelledError()
        kind, non_retryable = classify_failure(result)
        message = (result.get("error") or {}).get("exception_message") or result.get("validation_summary") or "failed"
        raise ApplicationError(f"{kind}: {message}", result, type=kind, non_retryable=non_retryable)

    # --- running ---------------------------------------------------------------------------------
    def build_workers(self) -> list:
        from temporalio import activity
        from temporalio.worker import FixedSizeSlotSupplier, Worker, WorkerTuner
        from datetime import timedelta
        async def run(job: dict) -> dict:
            return await self.run_prompt(job)
        run = activity.defn(name=RUN_ACTIVITY)(run)
        throttle = {"max_heartbeat_throttle_interval": timedelta(seconds=0.5),
                    "default_heartbeat_throttle_interval": timedelta(seconds=0.5), "identity": self.worker_id}
        class_tuner = WorkerTuner.create_composite(
            workflow_supplier=FixedSizeSlotSupplier(2), activity_supplier=_idle_gpu_slots(self.gpu),
            local_activity_supplier=FixedSizeSlotSupplier(2), nexus_supplier=FixedSizeSlotSupplier(1))
        workers = [Worker(self.client, task_queue=host_queue(self.worker_id), activities=[run],
                          max_concurrent_activities=1, **throttle),
                   Worker(self.client, task_queue=class_queue(self.gpu_class), activities=[run], tuner=class_tuner,
                          **throttle)]
        if self.host_control:
            from .routing import control_worker
            workers.append(control_worker(self.client, identity=self.worker_id))
        return workers

    async def run(self, stop: Optional[asyncio.Event] = None) -> None:
        self._loop = asyncio.get_running_loop()
        resident_models().on_change = self._advertise_soon
        self._workers = self.build_workers()
        advertiser = asyncio.ensure_future(self._advertise_loop())
        runs = [asyncio.ensure_future(w.run()) for w in self._workers]
        print(f"VibeBoard farm worker {self.worker_id} ({self.gpu_class}) polling "
              f"{host_queue(self.worker_id)} and {class_queue(self.gpu_class)}", flush=True)
        try:
            if stop is None:
                await asyncio.gather(*runs)
            else:
                await stop.wait()
        finally:
            advertiser.cancel()
            try:
                from .workflows import FarmRegistry
                await self.client.get_workflow_handle(REGISTRY_ID).signal(FarmRegistry.leave, self.worker_id)
            except Exception:
                pass
            await asyncio.gather(*(w.shutdown() for w in self._workers), return_exceptions=True)
