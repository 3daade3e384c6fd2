"""Pod → API fallback: the decision (no GPU, low VRAM, long queue, forced, workflow option), the lazy local
branch that is only evaluated when the pod is used, the OOM remedy, and the provenance that marks it."""
import json
import sqlite3

import pytest
from managed_api_replay import ledger_rows, load_cassette, tiny_png

from vibeboard_runner.executor import Executor
from vibeboard_runner.jobstore import JobStore
from vibeboard_runner.registry import NodeRegistry
from vibeboard_runner.workflow import apply_overrides
from vibeboard.managed_api import fallback


def _graph(mode="auto", **inputs):
    return {
        "1": {"class_type": "VBSampleRGBDScene", "inputs": {"width": 64, "height": 48, "seed": 0}},
        "2": {"class_type": "VBApiFallback", "inputs": {
            "local": ["1", 0], "mode": mode, "api_model": "fal-ai/flux/schnell", "prompt": "a lighthouse",
            "width": 64, "height": 64, "duration_s": 5, "seed": 1, "local_fps": 12.0, "max_queue": 0,
            "min_free_vram_gb": 0.0, "api_key_env": "FAL_KEY", "timeout_s": 60,
            "filename_prefix": "vibeboard/fallback", **inputs}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "saved"}},
    }


def _run(tmp_path, prompt):
    ex = Executor(NodeRegistry.default(), output_dir=str(tmp_path / "output"), input_dir=str(tmp_path / "input"),
                  temp_dir=str(tmp_path / "temp"), models_dir=str(tmp_path / "models"))
    return ex.execute(prompt)


def test_decisions():
    assert fallback.decide("api") == fallback.Decision(True, "workflow option mode=api")
    assert not fallback.decide("pod", gpu_state=(False, 0.0)).use_api
    assert fallback.decide("auto", gpu_state=(False, 0.0)).reason == "no CUDA GPU on this worker"
    low = fallback.decide("auto", min_free_vram_gb=8, gpu_state=(True, 3.5))
    assert low.use_api and "3.5 GiB VRAM free" in low.reason
    assert not fallback.decide("auto", min_free_vram_gb=8, gpu_state=(True, 40.0)).use_api


def test_queue_depth_comes_from_the_servers_job_store(api_env, monkeypatch):
    store = JobStore(str(api_env / "vibeboard-jobs.sqlite"))  # where `vibeboard serve` keeps it
    for i in range(3):
        store.add(f"j{i}", {}, {}, [], store.next_number())
    store.close()
    assert fallback.queue_depth() == 3
    busy = fallback.decide("auto", max_queue=2, gpu_state=(True, 80.0))
    assert busy.use_api and "3 waiting jobs" in busy.reason
    assert not fallback.decide("auto", max_queue=5, gpu_state=(True, 80.0)).use_api
    monkeypatch.setenv("VIBEBOARD_FORCE_API", "1")
    assert fallback.decide("pod").use_api  # the remedy wins over the workflow's choice


def test_pod_mode_evaluates_the_local_branch_and_calls_nothing(api_env, fal_replay):
    server = fal_replay([])
    result = _run(api_env, _graph(mode="pod"))
    assert result.status == "success", result.error
    assert "1" in result.executed and server.requests == []
    assert ledger_rows(api_env) == []


def test_without_a_gpu_the_api_runs_and_the_local_branch_is_never_evaluated(api_env, fal_replay, monkeypatch):
    monkeypatch.setattr(fallback, "_gpu_state", lambda: (False, 0.0))
    server = fal_replay(load_cassette("fal_flux_t2i.json"), {"flux_out.png": tiny_png()})
    result = _run(api_env, _graph())
    assert result.status == "success", result.error
    assert "1" not in result.executed  # the pod's own generation was skipped
    assert len(server.calls("POST", "/fal-ai/flux/schnell")) == 1
    (row,) = ledger_rows(api_env)
    assert row["fallback"] == 1 and "no CUDA GPU" in row["note"]
    side = json.load(open(api_env / "output" / "vibeboard" / "fallback_00001_.png.vibeboard.json"))
    assert side["fallback"] is True and side["fallback_reason"] == "no CUDA GPU on this worker"
    assert "pod fallback: no CUDA GPU" in side["dailies_note"]


def test_an_oom_remedy_reruns_the_job_on_the_api(api_env, fal_replay, monkeypatch):
    monkeypatch.setattr(fallback, "_gpu_state", lambda: (True, 80.0))
    prompt = _graph(mode="auto")
    oom = {"exception_type": "torch.OutOfMemoryError", "exception_message": "CUDA out of memory. Tried to "
           "allocate 20.00 GiB"}
    assert fallback.remedy(prompt, {"exception_type": "ValueError", "exception_message": "bad"}) is None
    assert fallback.remedy({"1": prompt["1"]}, oom) is None  # no fallback node: nothing to switch
    overrides = fallback.remedy(prompt, oom)
    assert overrides == {"2.mode": "api"}
    fal_replay(load_cassette("fal_flux_t2i.json"), {"flux_out.png": tiny_png()})
    result = _run(api_env, apply_overrides(prompt, overrides))
    assert result.status == "success", result.error
    assert ledger_rows(api_env)[0]["note"].endswith("pod fallback: workflow option mode=api")


def test_fallback_without_a_key_names_the_variable(api_env, monkeypatch):
    monkeypatch.setattr(fallback, "_gpu_state", lambda: (False, 0.0))
    monkeypatch.delenv("FAL_KEY")
    result = _run(api_env, _graph())
    assert result.status == "error"
    assert result.error["node_id"] == "2"
    assert "$FAL_KEY is not set" in result.error["exception_message"]


def test_queue_depth_is_none_without_a_job_store(api_env):
    assert fallback.queue_depth() is None
    with pytest.raises(sqlite3.Error):
        sqlite3.connect(f"file:{api_env / 'nope.sqlite'}?mode=ro", uri=True).execute("select 1")
