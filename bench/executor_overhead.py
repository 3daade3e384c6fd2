"""Per-node overhead of the embedded executor (goal ≤ 1 ms per node).

A chain of N trivial nodes is run with the cache off (every node executes) and with the cache on (second
run: nothing executes). Prints a table. Usage: python bench/executor_overhead.py [--nodes 200] [--repeat 5]
"""
import argparse
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "custom_nodes"), os.path.join(ROOT, "bench")]

from bench_common import SinkNode, timed  # noqa: E402
from vibeboard_runner.executor import Executor  # noqa: E402
from vibeboard_runner.registry import NodeRegistry  # noqa: E402


class Inc:
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "bench"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 0, "min": -10**9, "max": 10**9})},
                "optional": {"step": ("INT", {"default": 1})}}

    def run(self, value, step=1):
        return (value + step,)


def chain(n):
    prompt = {"0": {"class_type": "Inc", "inputs": {"value": 0}}}
    for i in range(1, n):
        prompt[str(i)] = {"class_type": "Inc", "inputs": {"value": [str(i - 1), 0], "step": 1}}
    prompt[str(n)] = {"class_type": "Sink", "inputs": {"value": [str(n - 1), 0]}}
    return prompt


def execute_ok(ex, prompt):
    result = ex.execute(prompt)
    assert result.status == "success"
    return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    registry = NodeRegistry({"Inc": Inc, "Sink": SinkNode})
    prompt = chain(args.nodes)
    total_nodes = args.nodes + 1
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for mode in ("none", "classic"):
            ex = Executor(registry, output_dir=tmp, input_dir=tmp, temp_dir=tmp, cache=mode)
            # one warm-up run (it also fills the cache in classic mode), then the median of --repeat runs
            median_s, _ = timed(lambda: execute_ok(ex, prompt), args.repeat, device="cpu")
            per_node_ms = median_s / total_nodes * 1000
            label = "all nodes execute (cache off)" if mode == "none" else "all cached (2nd run)"
            rows.append((label, median_s * 1000, per_node_ms))
    print(f"executor overhead, chain of {total_nodes} trivial nodes, median of {args.repeat}")
    print(f"{'case':<32} {'run ms':>10} {'per node ms':>12} {'goal':>8}")
    for label, run_ms, per_node in rows:
        verdict = "ok" if per_node <= 1.0 else "MISS"
        print(f"{label:<32} {run_ms:>10.2f} {per_node:>12.4f} {'≤1 ms':>8} {verdict}")


if __name__ == "__main__":
    main()
