"""Review fixes in the embedded executor: odd-but-valid prompts, instance lifetime, cache clearing mid-run."""
import threading

import pytest

import executor_nodes as N
from vibeboard_runner.executor import Executor


@pytest.fixture
def ex(tmp_path):
    N.CALLS.clear()
    return Executor(N.registry(), output_dir=tmp_path / "out", input_dir=tmp_path / "in", temp_dir=tmp_path / "t")


def test_unreachable_node_with_dangling_link_does_not_crash(ex):
    # Validation only walks from output nodes; a leftover node nobody needs may link to a deleted node.
    prompt = {"1": {"class_type": "Constant", "inputs": {"value": 2}},
              "2": {"class_type": "Record", "inputs": {"value": ["1", 0]}},
              "leftover": {"class_type": "Add", "inputs": {"a": ["99", 0], "b": 1}}}
    result = ex.execute(prompt)
    assert result.status == "success", result.error
    assert result.outputs["2"] == {"text": ["2"]}


def test_unreachable_cycle_does_not_crash(ex):
    prompt = {"1": {"class_type": "Constant", "inputs": {"value": 3}},
              "2": {"class_type": "Record", "inputs": {"value": ["1", 0]}},
              "a": {"class_type": "Add", "inputs": {"a": ["b", 0], "b": 1}},
              "b": {"class_type": "Add", "inputs": {"a": ["a", 0], "b": 1}}}
    result = ex.execute(prompt)
    assert result.status == "success", result.error
    assert result.executed == ["1", "2"]


def test_node_instances_of_previous_prompts_are_released(ex):
    # ComfyUI keeps node objects only for the current prompt's nodes (objects cache is cleaned per prompt):
    # an instance may hold a loaded model, so a server alternating workflows must not pile them up.
    first = {"10": {"class_type": "Constant", "inputs": {"value": 1}},
             "11": {"class_type": "Record", "inputs": {"value": ["10", 0]}}}
    second = {"20": {"class_type": "Constant", "inputs": {"value": 2}},
              "21": {"class_type": "Record", "inputs": {"value": ["20", 0]}}}
    assert ex.execute(first).ok
    assert ex.execute(second).ok
    assert {node_id for node_id, _cls in ex._objects} == {"20", "21"}


def test_clear_cache_during_a_run_waits_for_the_run(ex):
    # POST /free runs on the server thread while the worker executes: clearing the cache dicts under a
    # running prompt races with its lookups. Like ComfyUI's /free flag it takes effect between prompts.
    prompt = {"1": {"class_type": "Constant", "inputs": {"value": 4}},
              "2": {"class_type": "Record", "inputs": {"value": ["1", 0]}},
              "3": {"class_type": "Slow", "inputs": {"steps": 30}},
              "4": {"class_type": "Record", "inputs": {"value": ["3", 0]}}}
    N.Slow.started = threading.Event()
    try:
        box = {}
        worker = threading.Thread(target=lambda: box.update(result=ex.execute(prompt)))
        worker.start()
        assert N.Slow.started.wait(10)
        cache_during_run = dict(ex._cache)
        assert len(cache_during_run) == 2  # nodes 1 and 2 already ran
        ex.clear_cache()
        assert dict(ex._cache) == cache_during_run  # untouched while the prompt runs
        worker.join(10)
        assert box["result"].ok
        assert not ex._cache and not ex._objects  # applied as soon as the prompt finished
        N.CALLS.clear()
        again = ex.execute(prompt)  # the deferred clear applies before this prompt: everything re-runs
        assert sorted(again.executed) == ["1", "2", "3", "4"]
    finally:
        N.Slow.started = None


def test_clear_cache_when_idle_is_immediate(ex):
    prompt = {"1": {"class_type": "Constant", "inputs": {"value": 4}},
              "2": {"class_type": "Record", "inputs": {"value": ["1", 0]}}}
    assert ex.execute(prompt).ok
    ex.clear_cache()
    assert not ex._cache and not ex._objects
