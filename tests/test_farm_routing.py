"""Model-affinity routing, failure classes and GPU cost grouping of the render farm (no server needed)."""
import time

import pytest

pytest.importorskip("temporalio")  # the `farm` extra (python install.py --dev installs it)

from vibeboard_runner.farm.gpucost import job_costs, parse_since, summary  # noqa: E402
from vibeboard_runner.farm.routing import choose, job_need, required_models  # noqa: E402
from vibeboard_runner.farm.worker import classify_failure  # noqa: E402

NOW = 1000.0


def _worker(wid, models=(), busy=False, gpu_class="a100", vram=80, seen=NOW, jobs=0):
    return {"worker_id": wid, "models": list(models), "busy": busy, "gpu_class": gpu_class, "vram_gb": vram,
            "seen": seen, "jobs": jobs}


def _farm(*workers):
    return {w["worker_id"]: w for w in workers}


def test_a_job_goes_to_the_idle_worker_holding_its_model():
    farm = _farm(_worker("a", ["wan-1.3b"]), _worker("b", ["flux"]), _worker("c", ["wan-1.3b"], busy=True))
    decision = choose(farm, {"models": ["wan-1.3b"]}, now=NOW)
    assert decision["queue"] == "vibeboard-host-a" and decision["worker"] == "a"


def test_a_busy_holder_still_beats_a_reload_and_the_excluded_one_falls_back_to_the_class_queue():
    farm = _farm(_worker("a", ["wan"], busy=True), _worker("b", ["flux"]))
    assert choose(farm, {"models": ["wan"]}, now=NOW)["worker"] == "a"
    fallback = choose(farm, {"models": ["wan"]}, exclude=["a"], now=NOW)
    assert fallback == {"queue": "vibeboard-gpu-a100", "worker": None, "reason": fallback["reason"]}


def test_unknown_models_go_to_the_class_of_the_least_busy_worker_and_stale_workers_are_ignored():
    farm = _farm(_worker("a", ["x"], busy=True, gpu_class="4090"), _worker("b", [], gpu_class="a6000"),
                 _worker("dead", ["new"], seen=NOW - 500))
    decision = choose(farm, {"models": ["new"]}, now=NOW, stale_s=90)
    assert decision["queue"] == "vibeboard-gpu-a6000" and decision["worker"] is None
    assert choose({}, {"models": ["new"]}, now=NOW, default_class="h200")["queue"] == "vibeboard-gpu-h200"


def test_declared_gpu_class_and_vram_limit_the_candidates():
    farm = _farm(_worker("small", ["wan-14b"], gpu_class="4090", vram=24), _worker("big", [], gpu_class="a100"))
    assert choose(farm, {"models": ["wan-14b"], "vram_gb": 40}, now=NOW)["queue"] == "vibeboard-gpu-a100"
    assert choose(farm, {"models": ["wan-14b"], "gpu_class": "h200"}, now=NOW)["queue"] == "vibeboard-gpu-h200"


def test_models_are_read_from_loader_inputs_or_declared():
    prompt = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
              "2": {"class_type": "LoraLoader", "inputs": {"lora_name": "style.safetensors", "model": ["1", 0]}},
              "3": {"class_type": "Note", "inputs": {"text": "model_name"}}}
    assert required_models(prompt) == ["sd15.safetensors", "style.safetensors"]
    need = job_need(prompt, {"vibeboard_farm": {"models": ["wan"], "gpu_class": "a100", "worker": "pod-3"}})
    assert need == {"models": ["wan"], "gpu_class": "a100", "vram_gb": None, "worker": "pod-3"}


def test_out_of_memory_and_bad_input_are_not_retried_other_failures_are():
    def failed(kind, message):
        return {"status": "error", "error": {"exception_type": kind, "exception_message": message}}
    assert classify_failure(failed("torch.OutOfMemoryError", "CUDA out of memory")) == ("OutOfMemory", True)
    assert classify_failure(failed("RuntimeError", "CUDA error: out of memory")) == ("OutOfMemory", True)
    assert classify_failure(failed("ValueError", "width must be a multiple of 16")) == ("BadInput", True)
    assert classify_failure({"status": "invalid"}) == ("BadInput", True)
    assert classify_failure(failed("ConnectionResetError", "peer reset")) == ("NodeError", False)


def test_job_cost_sums_node_costs_and_groups_by_workflow_model_user():
    costs = job_costs({"1": {"class_type": "A"}, "2": {"class_type": "B"}}, {"1": 1.5, "2": 2.5}, 3.6)
    assert costs["nodes"]["1"]["cost_usd"] == 0.0015 and costs["cost_usd"] == 0.004 and costs["gpu_seconds"] == 4.0
    assert job_costs({}, {"1": 2.0}, None)["cost_usd"] is None  # unknown price: unpriced, not $0
    rows = [{"job_id": "j1", "kind": "node", "seconds": 1.0, "cost_usd": 0.001, "storage_bytes": 0, "workflow": "w",
             "model": "m", "user": "u"},
            {"job_id": "j1", "kind": "storage", "seconds": 0, "cost_usd": 0, "storage_bytes": 100, "workflow": "w",
             "model": "m", "user": "u"},
            {"job_id": "j2", "kind": "node", "seconds": 3.0, "cost_usd": 0.003, "storage_bytes": 0, "workflow": "w",
             "model": "n", "user": "u"}]
    assert summary(rows, "workflow")["w"] == {"jobs": 2, "nodes": 2, "gpu_seconds": 4.0, "cost_usd": 0.004,
                                              "per_job_usd": 0.002, "storage_bytes": 100, "unpriced_nodes": 0}
    assert set(summary(rows, "model")) == {"m", "n"}


def test_since_accepts_durations_and_dates():
    assert abs(parse_since("2h") - (time.time() - 7200)) < 5
    assert parse_since("2026-12-01T00:00:00") == 1796083200.0
    assert parse_since(None) is None
