"""The farm's two Temporal workflows. Deterministic code only: no I/O, no clocks but workflow.now(), no
imports beyond temporalio (the SDK re-imports this module inside its sandbox).

RenderJob (one per prompt, workflow id = the VibeBoard job id, so a prompt can never be started twice):
  route (local activity: which queue) → run the prompt on that queue (activity with heartbeats) →
  on a schedule-to-start timeout of a worker's own queue: fall back (route again without that worker);
  on a lost worker (heartbeat timeout) or a retryable error: run again from the start on another worker;
  OutOfMemory / BadInput: fail at once (non-retryable), the failed workflow is the dead-letter entry.
FarmRegistry (one per farm): workers advertise their GPU class, VRAM, resident models and busy state by
  signal; the router reads it by query.
"""
from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError
from temporalio.exceptions import TimeoutError as TemporalTimeout
from temporalio.exceptions import TimeoutType

REGISTRY_ID = "vibeboard-farm-registry"
CONTROL_QUEUE = "vibeboard-control"        # workflows + the routing local activity
ROUTE_ACTIVITY = "vibeboard_route"
RUN_ACTIVITY = "vibeboard_run_prompt"
NON_RETRYABLE = ("OutOfMemory", "BadInput")  # the same input would fail the same way on any worker
REGISTRY_SIGNALS_BEFORE_NEW_RUN = 1000        # keeps the registry's event history short


def class_queue(gpu_class: str) -> str:
    return f"vibeboard-gpu-{gpu_class}"


def host_queue(worker_id: str) -> str:
    return f"vibeboard-host-{worker_id}"


DEFAULTS = {"heartbeat_s": 30.0, "fallback_s": 60.0, "max_attempts": 3, "job_timeout_s": 6 * 3600.0,
            "stale_s": 90.0, "default_class": "default"}


def _heartbeat_worker(cause):
    """The worker named in the last heartbeat of a timed-out attempt (a killed pod reports nothing else)."""
    details = getattr(cause, "last_heartbeat_details", None) or ()
    first = details[0] if details else None
    return first.get("worker") if isinstance(first, dict) else None


@workflow.defn(name="VibeboardRenderJob")
class RenderJob:
    def __init__(self) -> None:
        self.tries: list = []

    @workflow.run
    async def run(self, job: dict) -> dict:
        cfg = {**DEFAULTS, **(job.get("config") or {})}
        exclude: list = []
        failures = 0
        while True:
            decision = await workflow.execute_local_activity(
                ROUTE_ACTIVITY, {"need": job.get("need") or {}, "exclude": exclude, "config": cfg},
                start_to_close_timeout=timedelta(seconds=30))
            on_host = decision.get("worker") is not None
            self.tries.append({"queue": decision["queue"], "worker": decision.get("worker"),
                               "reason": decision.get("reason"), "at": workflow.now().timestamp()})
            try:
                result = await workflow.execute_activity(
                    RUN_ACTIVITY, {**job, "attempt": len(self.tries), "failures": failures},
                    task_queue=decision["queue"],
                    schedule_to_start_timeout=timedelta(seconds=cfg["fallback_s"]) if on_host else None,
                    start_to_close_timeout=timedelta(seconds=cfg["job_timeout_s"]),
                    heartbeat_timeout=timedelta(seconds=cfg["heartbeat_s"]),
                    retry_policy=RetryPolicy(maximum_attempts=1),  # retries are ours: to another worker
                    cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED)
            except ActivityError as err:
                cause = err.cause
                self.tries[-1]["error"] = f"{type(cause).__name__}: {cause}"
                ran_on = err.identity or _heartbeat_worker(cause)
                self.tries[-1]["ran_on"] = ran_on
                if isinstance(cause, TemporalTimeout) and cause.type == TimeoutType.SCHEDULE_TO_START:
                    exclude.append(decision["worker"])  # that worker is busy or gone: fall back
                    continue
                if isinstance(cause, CancelledError):
                    raise
                if isinstance(cause, ApplicationError) and (cause.non_retryable or cause.type in NON_RETRYABLE):
                    raise ApplicationError(cause.message, *cause.details, {"tries": self.tries},
                                           type=cause.type, non_retryable=True)
                failures += 1
                if ran_on and ran_on not in exclude:
                    exclude.append(ran_on)  # run again elsewhere (a killed pod stays excluded)
                if failures >= int(cfg["max_attempts"]):
                    details = cause.details if isinstance(cause, ApplicationError) else ()
                    raise ApplicationError(f"gave up after {failures} attempt(s): {cause}", *details,
                                           {"tries": self.tries}, type="RetriesExhausted", non_retryable=True)
                continue
            result.setdefault("farm", {})["tries"] = self.tries
            return result

    @workflow.query
    def attempts(self) -> list:
        return self.tries


@workflow.defn(name="VibeboardFarmRegistry")
class FarmRegistry:
    def __init__(self) -> None:
        self.workers: dict = {}
        self.signals = 0

    @workflow.run
    async def run(self, workers) -> None:
        if workers:
            self.workers.update(workers)
        await workflow.wait_condition(
            lambda: self.signals >= REGISTRY_SIGNALS_BEFORE_NEW_RUN and workflow.all_handlers_finished())
        workflow.continue_as_new(self.workers)

    @workflow.signal
    def advertise(self, info: dict) -> None:
        entry = dict(info)
        entry["seen"] = workflow.now().timestamp()
        self.workers[str(info["worker_id"])] = entry
        self.signals += 1

    @workflow.signal
    def leave(self, worker_id: str) -> None:
        self.workers.pop(str(worker_id), None)
        self.signals += 1

    @workflow.query
    def snapshot(self) -> dict:
        return self.workers
