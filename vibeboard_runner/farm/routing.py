"""Model affinity: which task queue a job goes to.

A job needs models (read from its loader inputs, or declared in extra_data["vibeboard_farm"]["models"]),
maybe a GPU class and an amount of VRAM. Workers advertise (FarmRegistry) their class, VRAM, resident models
and whether they are busy. The rule (Temporal's worker-specific task queue pattern):
  1. a live worker that already holds the job's models → its own host queue (idle holders first; a busy
     holder still beats a reload elsewhere, and the workflow's schedule-to-start timeout falls back if it
     stays busy);
  2. else the GPU-class queue: the declared class, or the class of the least busy live worker that fits —
     whoever takes it loads the models and advertises them, so the next such job comes back to it.
Workers excluded by the workflow (busy past the fallback timeout, or lost mid-job) are skipped.
"""
from __future__ import annotations

import time
from typing import Iterable, Optional

from .workflows import REGISTRY_ID, class_queue, host_queue

# Loader inputs that name a model file / repo (ComfyUI core loaders and the pack's loaders use these).
MODEL_INPUT_KEYS = ("ckpt_name", "unet_name", "model_name", "vae_name", "clip_name", "clip_name1", "clip_name2",
                    "lora_name", "control_net_name", "repo_id", "model_path", "checkpoint")


def required_models(prompt: dict, extra_data: Optional[dict] = None) -> list:
    declared = ((extra_data or {}).get("vibeboard_farm") or {}).get("models")
    if declared:
        return sorted({str(m) for m in declared})
    found = set()
    for node in (prompt or {}).values():
        for key, value in ((node or {}).get("inputs") or {}).items():
            if key in MODEL_INPUT_KEYS and isinstance(value, str) and value:
                found.add(value)
    return sorted(found)


def job_need(prompt: dict, extra_data: Optional[dict] = None) -> dict:
    farm = (extra_data or {}).get("vibeboard_farm") or {}
    return {"models": required_models(prompt, extra_data), "gpu_class": farm.get("gpu_class"),
            "vram_gb": farm.get("vram_gb"), "worker": farm.get("worker")}


def choose(workers: dict, need: dict, exclude: Iterable[str] = (), now: Optional[float] = None,
           stale_s: float = 90.0, default_class: str = "default") -> dict:
    """{"queue", "worker" (None for a class queue), "reason"} for one job."""
    now = time.time() if now is None else now
    excluded = set(exclude or ())
    live = [w for w in (workers or {}).values()
            if w.get("worker_id") not in excluded and now - float(w.get("seen", 0)) <= stale_s]
    if need.get("gpu_class"):
        live = [w for w in live if w.get("gpu_class") == need["gpu_class"]]
    if need.get("vram_gb"):
        live = [w for w in live if float(w.get("vram_gb") or 0) >= float(need["vram_gb"])]
    pinned = [w for w in live if need.get("worker") and w.get("worker_id") == need["worker"]]
    if pinned:  # extra_data["vibeboard_farm"]["worker"]: run on that pod (warm-ups, debugging)
        return {"queue": host_queue(need["worker"]), "worker": need["worker"], "reason": "pinned"}
    models = set(need.get("models") or ())
    if models:
        scored = [(len(models & set(w.get("models") or ())), w) for w in live]
        scored = [(overlap, w) for overlap, w in scored if overlap]
        if scored:
            overlap, best = min(scored, key=lambda s: (-s[0], bool(s[1].get("busy")), int(s[1].get("jobs", 0)),
                                                       s[1]["worker_id"]))
            return {"queue": host_queue(best["worker_id"]), "worker": best["worker_id"],
                    "reason": f"holds {overlap}/{len(models)} model(s)"
                              + (" (busy: falls back after the timeout)" if best.get("busy") else "")}
    if need.get("gpu_class"):
        return {"queue": class_queue(need["gpu_class"]), "worker": None, "reason": "declared GPU class"}
    if live:
        pick = min(live, key=lambda w: (bool(w.get("busy")), int(w.get("jobs", 0)), w["worker_id"]))
        return {"queue": class_queue(pick["gpu_class"]), "worker": None,
                "reason": f"no worker holds the models; class of the least busy worker ({pick['worker_id']})"}
    return {"queue": class_queue(default_class), "worker": None, "reason": "no live worker fits; default class"}


class Router:
    """The routing local activity (runs next to the workflow, reads the registry by query)."""

    def __init__(self, client):
        self.client = client

    async def snapshot(self) -> dict:
        from .workflows import FarmRegistry
        try:
            return await self.client.get_workflow_handle(REGISTRY_ID).query(FarmRegistry.snapshot)
        except Exception:  # no worker has advertised yet
            return {}

    def activity(self):
        from temporalio import activity
        from .workflows import ROUTE_ACTIVITY

        @activity.defn(name=ROUTE_ACTIVITY)
        async def route(args: dict) -> dict:
            cfg = args.get("config") or {}
            workers = await self.snapshot()
            return choose(workers, args.get("need") or {}, args.get("exclude") or (),
                          stale_s=float(cfg.get("stale_s", 90.0)), default_class=cfg.get("default_class", "default"))
        return route


def control_worker(client, identity: Optional[str] = None):
    """A Temporal worker for the control queue: the workflows and the routing activity."""
    from temporalio.worker import Worker
    from .workflows import CONTROL_QUEUE, FarmRegistry, RenderJob
    from datetime import timedelta
    kwargs = {"identity": identity} if identity else {}
    # A workflow's next task goes first to the process that ran its last one (sticky queue). When that pod
    # is killed, Temporal waits this long before handing the task to another process: 10 s by default,
    # which would stall every job and registry query the dead pod had cached. Our workflows replay in ms.
    return Worker(client, task_queue=CONTROL_QUEUE, workflows=[RenderJob, FarmRegistry],
                  activities=[Router(client).activity()],
                  sticky_queue_schedule_to_start_timeout=timedelta(seconds=2), **kwargs)
