import threading

import pytest

import executor_nodes as N
from vibeboard_runner.executor import Executor


@pytest.fixture
def ex(tmp_path):
    N.CALLS.clear()
    return Executor(N.registry(), output_dir=tmp_path / "out", input_dir=tmp_path / "in", temp_dir=tmp_path / "t")


def graph(*nodes):
    return {str(i + 1): {"class_type": c, "inputs": inputs} for i, (c, inputs) in enumerate(nodes)}


def test_runs_only_what_outputs_need_in_order(ex):
    prompt = graph(("Constant", {"value": 2}), ("Constant", {"value": 3}), ("Add", {"a": ["1", 0], "b": ["2", 0]}),
                   ("Record", {"value": ["3", 0]}), ("Constant", {"value": 99}))
    result = ex.execute(prompt)
    assert result.status == "success"
    assert result.outputs["4"] == {"text": ["5"]}
    assert ("Constant", 99) not in N.CALLS  # not needed by any output
    assert result.executed.index("3") > result.executed.index("1")
    assert result.executed[-1] == "4"


def test_second_run_of_unchanged_workflow_executes_nothing(ex):
    prompt = graph(("Constant", {"value": 2}), ("Add", {"a": ["1", 0], "b": 1}), ("Record", {"value": ["2", 0]}))
    first = ex.execute(prompt)
    assert first.executed == ["1", "2", "3"]
    N.CALLS.clear()
    second = ex.execute(prompt)
    assert second.executed == [] and N.CALLS == []
    assert second.outputs == first.outputs  # cached UI is reported again
    assert sorted(second.cached_at_start) == ["1", "2", "3"]


def test_changing_a_constant_reruns_only_downstream(ex):
    prompt = graph(("Constant", {"value": 2}), ("Constant", {"value": 5}), ("Add", {"a": ["1", 0], "b": ["2", 0]}),
                   ("Record", {"value": ["3", 0]}))
    ex.execute(prompt)
    prompt["2"]["inputs"]["value"] = 6
    result = ex.execute(prompt)
    assert sorted(result.executed) == ["2", "3", "4"]
    assert result.outputs["4"] == {"text": ["8"]}


def test_is_changed_nan_forces_rerun(ex):
    prompt = graph(("AlwaysChanged", {"value": 1}), ("Record", {"value": ["1", 0]}))
    ex.execute(prompt)
    again = ex.execute(prompt)
    assert "1" in again.executed


def test_identical_subgraphs_share_cache_entries(ex):
    prompt = graph(("Constant", {"value": 7}), ("Constant", {"value": 7}), ("Add", {"a": ["1", 0], "b": ["2", 0]}),
                   ("Record", {"value": ["3", 0]}))
    ex.execute(prompt)
    assert N.CALLS.count(("Constant", 7)) == 1  # same key → computed once, like ComfyUI


def test_cache_none_mode(tmp_path):
    ex = Executor(N.registry(), output_dir=tmp_path, cache="none")
    prompt = graph(("Constant", {"value": 2}), ("Record", {"value": ["1", 0]}))
    ex.execute(prompt)
    assert ex.execute(prompt).executed == ["1", "2"]


def test_output_is_list_maps_downstream_calls(ex):
    prompt = graph(("MakeList", {"count": 3}), ("Add", {"a": ["1", 0], "b": 10}), ("Record", {"value": ["2", 0]}))
    result = ex.execute(prompt)
    assert [c for c in N.CALLS if c[0] == "Add"] == [("Add", 0, 10), ("Add", 1, 10), ("Add", 2, 10)]
    assert result.outputs["3"] == {"text": ["10", "11", "12"]}  # ui merged over the calls


def test_input_is_list_gets_whole_list(ex):
    prompt = graph(("MakeList", {"count": 4}), ("SumList", {"values": ["1", 0]}), ("Record", {"value": ["2", 0]}))
    result = ex.execute(prompt)
    assert ("SumList", [0, 1, 2, 3]) in N.CALLS
    assert result.outputs["3"] == {"text": ["6"]}


def test_lazy_inputs_evaluate_only_requested_branch(ex):
    prompt = graph(("Constant", {"value": 1}), ("Constant", {"value": 2}),
                   ("Switch", {"use_a": False, "a": ["1", 0], "b": ["2", 0]}), ("Record", {"value": ["3", 0]}))
    result = ex.execute(prompt)
    assert result.outputs["4"] == {"text": ["2"]}
    assert ("Constant", 1) not in N.CALLS and ("Constant", 2) in N.CALLS
    assert ("Switch", False, None, 2) in N.CALLS


def test_lazy_input_without_check_is_not_evaluated(ex):
    prompt = graph(("Constant", {"value": 4}), ("LazyNoCheck", {"a": ["1", 0]}), ("Record", {"value": ["2", 0]}))
    result = ex.execute(prompt)
    assert result.outputs["3"] == {"text": ["-1"]} and ("Constant", 4) not in N.CALLS


def test_unrequested_lazy_input_gets_its_cached_value(ex):
    ex.execute(graph(("Constant", {"value": 1}), ("Record", {"value": ["1", 0]})))  # caches Constant(1)
    N.CALLS.clear()
    prompt = graph(("Constant", {"value": 1}), ("Constant", {"value": 2}),
                   ("Switch", {"use_a": False, "a": ["1", 0], "b": ["2", 0]}), ("Record", {"value": ["3", 0]}))
    ex.execute(prompt)
    assert ("Switch", False, 1, 2) in N.CALLS and ("Constant", 1) not in N.CALLS


def test_progress_events_and_order(ex):
    events = []
    prompt = graph(("Slow", {"steps": 3}), ("Record", {"value": ["1", 0]}))
    ex.execute(prompt, prompt_id="p1", on_event=lambda e, d: events.append((e, d)))
    names = [e for e, _ in events]
    assert names[0] == "execution_start" and names[1] == "execution_cached"
    assert [d["value"] for e, d in events if e == "progress"] == [1, 2, 3]
    assert all(d["node"] == "1" and d["max"] == 3 for e, d in events if e == "progress")
    assert names[-2:] == ["execution_success", "executing"] and events[-1][1] == {"node": None, "prompt_id": "p1"}
    executed = [d for e, d in events if e == "executed"]
    assert executed == [{"node": "2", "display_node": "2", "output": {"text": ["3"]}, "prompt_id": "p1"}]


def test_interrupt_stops_the_run(ex):
    N.Slow.started = threading.Event()
    prompt = graph(("Slow", {"steps": 500}), ("Record", {"value": ["1", 0]}))
    box = {}
    worker = threading.Thread(target=lambda: box.update(r=ex.execute(prompt)))
    worker.start()
    assert N.Slow.started.wait(10)
    ex.interrupt()
    worker.join(10)
    N.Slow.started = None
    result = box["r"]
    assert result.status == "interrupted"
    assert result.error["node_id"] == "1"
    assert ("Slow", 500) not in N.CALLS
    # The next prompt runs normally (the flag is reset at prompt start).
    assert ex.execute(graph(("Constant", {"value": 1}), ("Record", {"value": ["1", 0]}))).status == "success"


def test_node_exception_reports_node_and_keeps_finished_results(ex):
    prompt = graph(("Constant", {"value": 3}), ("Fail", {"value": ["1", 0]}), ("Record", {"value": ["2", 0]}))
    events = []
    result = ex.execute(prompt, on_event=lambda e, d: events.append((e, d)))
    assert result.status == "error"
    err = result.error
    assert err["node_id"] == "2" and err["node_type"] == "Fail"
    assert "boom: value was 3" in err["exception_message"] and err["exception_type"] == "ValueError"
    assert err["executed"] == ["1"] and err["current_inputs"] == {"value": [3]}
    assert ("execution_error", err) in events
    # Fix the failing node: the finished upstream node comes from the cache.
    prompt["2"] = {"class_type": "Add", "inputs": {"a": ["1", 0], "b": 0}}
    N.CALLS.clear()
    again = ex.execute(prompt)
    assert again.status == "success" and "1" in again.cached


def test_history_entry_shape(ex):
    result = ex.execute(graph(("Constant", {"value": 1}), ("Record", {"value": ["1", 0]})), prompt_id="abc")
    entry = result.history_entry(number=3)
    assert entry["prompt"][0:2] == [3, "abc"] and entry["prompt"][4] == ["2"]
    assert entry["status"]["status_str"] == "success" and entry["status"]["completed"] is True
    assert [m[0] for m in entry["status"]["messages"]] == ["execution_start", "execution_cached", "execution_success"]
