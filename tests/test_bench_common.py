"""bench/bench_common.py: the one home of the benchmarks' timing, step clock, peak memory, errors, tables and card
line — and no bench script keeps a private copy of them."""
import ast
import datetime
import gc
import json
import math
import os
import sys
import weakref

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
sys.path.insert(0, BENCH)

import bench_common as bc  # noqa: E402


class FakeClock:
    """perf_counter that only moves when a timed function says how long it took."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(bc.time, "perf_counter", fake)
    return fake


def test_timed_takes_the_median_of_the_calls_after_the_warm_up_and_returns_the_last_output(clock):
    durations = iter([5.0, 1.0, 4.0, 2.0])
    calls = []

    def fn():
        clock.now += next(durations)
        calls.append(clock.now)
        return len(calls)

    stats = {}
    median_s, out = bc.timed(fn, 3, warmup=1, device="cpu", stats=stats)
    assert median_s == 2.0 and out == 4 and len(calls) == 4
    assert stats == {"first_s": 5.0, "warmup_s": [5.0], "times": [1.0, 4.0, 2.0]}
    # an even count: the mean of the two middle values (warm-up 1, then 3, 1, 2, 4)
    durations = iter([1.0, 3.0, 1.0, 2.0, 4.0])
    assert bc.timed(fn, 4, device="cpu")[0] == 2.5


def test_timed_with_no_repeats_reports_the_warm_up_and_without_any_call_nan(clock):
    def fn():
        clock.now += 0.25
        return "x"

    stats = {}
    assert bc.timed(fn, 0, warmup=1, device="cpu", stats=stats) == (0.25, "x")
    assert stats["first_s"] == 0.25 and stats["times"] == []
    median_s, out = bc.timed(fn, 0, warmup=0, device="cpu")
    assert math.isnan(median_s) and out is None


def test_timed_frees_the_previous_output_before_the_next_call():
    """A peak-memory reading around timed is one call's, not two outputs'."""
    class Output:
        pass

    alive_at_call = []
    last = [None]

    def fn():
        gc.collect()
        alive_at_call.append(last[0] is not None and last[0]() is not None)
        out = Output()
        last[0] = weakref.ref(out)
        return out

    bc.timed(fn, 3, warmup=1, device="cpu")
    assert alive_at_call == [False, False, False, False]


def test_step_timer_stamps_each_step_and_answers_diffusers_callbacks(clock):
    steps = bc.StepTimer("cpu").start()
    for dt in (3.0, 1.0, 2.0):
        clock.now += dt
        steps(0, 3, None)                   # wan.sampler.sample's callback(i, total, latents)
    assert steps.intervals() == [3.0, 1.0, 2.0]
    plain = bc.StepTimer("cpu")             # without start(): the intervals between callbacks only
    kwargs = {"latents": torch.zeros(1)}
    for dt in (5.0, 1.0, 1.5):
        clock.now += dt
        assert plain.diffusers_callback(None, 0, 999, kwargs) is kwargs
    assert plain.intervals() == [1.0, 1.5]


def test_errors_relative_l2_and_max_abs_against_the_reference():
    ref = torch.tensor([3.0, 4.0])
    out = torch.tensor([3.0, 4.5], dtype=torch.bfloat16)
    assert bc.rel_err(out, ref) == pytest.approx(0.1)
    assert bc.max_abs_err(out, ref) == pytest.approx(0.5)
    assert bc.max_abs_and_rel_err(out, ref) == (pytest.approx(0.5), pytest.approx(0.1))
    assert math.isfinite(bc.rel_err(ref, torch.zeros(2)))   # a zero reference does not divide by zero
    assert bc.rel_err(ref, ref) == 0.0


def test_markdown_table_head_rule_and_rows():
    assert bc.md_table(["a", "b c"], [[1, 2.5], ["x", None]]) == "| a | b c |\n|---|---|\n| 1 | 2.5 |\n| x | None |"
    assert bc.md_table(["only", "head"], []) == "| only | head |\n|---|---|"     # printed first, rows streamed
    assert bc.md_row(["n", "", 3]) == "| n |  | 3 |"


def test_peak_memory_and_sync_are_no_ops_off_cuda():
    bc.sync("cpu")
    bc.peak_reset("cpu")
    assert math.isnan(bc.peak_gb("cpu")) and math.isnan(bc.peak_gib(torch.device("cpu")))


def test_card_line_records_versions_and_the_date():
    line = bc.card_line("cpu")
    assert line.startswith("cpu (") and f"torch {torch.__version__}" in line
    assert "triton " in line and "CUDA " in line
    assert datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d") in line


def test_write_json_and_default_dtype(tmp_path):
    bc.write_json(None, {"a": 1})                       # no --json: nothing written, no error
    bc.write_json(str(tmp_path / "o.json"), {"a": float("nan"), "d": torch.float16}, default=str)
    assert json.loads((tmp_path / "o.json").read_text().replace("NaN", "null")) == {"a": None, "d": "torch.float16"}
    before = torch.get_default_dtype()
    with pytest.raises(RuntimeError), bc.default_dtype(torch.float64):
        assert torch.zeros(1).dtype == torch.float64
        raise RuntimeError("build failed")
    assert torch.get_default_dtype() == before


def test_sink_node_shows_its_value():
    assert bc.SinkNode().run(7) == {"ui": {"text": ["7"]}}
    assert bc.SinkNode.OUTPUT_NODE and bc.SinkNode.INPUT_TYPES()["required"]["value"][0] == "INT"


HELPERS = {"sync", "_sync", "timed", "_timed", "_rel", "rel_err", "errors", "peak_gb", "peak_gib", "peak_reset",
           "md_table", "card_line", "write_json"}


def test_no_bench_script_keeps_a_private_copy_of_the_helpers():
    for name in sorted(os.listdir(BENCH)):
        if not name.endswith(".py") or name == "bench_common.py":
            continue
        with open(os.path.join(BENCH, name), encoding="utf-8") as f:
            tree = ast.parse(f.read())
        defined = {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
        assert not defined & HELPERS, f"bench/{name} defines {sorted(defined & HELPERS)}: use bench_common"
