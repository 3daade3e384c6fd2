"""Service overhead benchmark: submit→start latency and per-job overhead of `vibeboard serve` with a trivial
workflow (goal ≤ 20 ms). CPU only is fine: the workflow does no real work, so this measures the service.

    python bench/service_bench.py            # 200 jobs
    python bench/service_bench.py --quick    # 30 jobs

Rows:
  submit→start (server)   POST /prompt accepted → GPU worker picked the job (in-process clocks)
  submit→start (client)   client starts POST → worker picked the job
  end-to-end per job      client POST → `executing {node: null}` received on the websocket (sequential jobs)
  executor alone          Executor.execute() of the same prompt, no server (baseline)
  per-job overhead        end-to-end − executor alone (queue, SQLite, history, storage push, WS, HTTP)
  burst throughput        N jobs queued at once → all finished; time per job
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "bench")]

from bench_common import SinkNode  # noqa: E402


class BenchConst:
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "bench"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 1})}}

    def run(self, value):
        return (value,)


def prompt(value):
    return {"1": {"class_type": "BenchConst", "inputs": {"value": value}},
            "2": {"class_type": "BenchSink", "inputs": {"value": ["1", 0]}}}


def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as response:
        return json.loads(response.read())


def stats_row(name, values_s):
    ms = sorted(v * 1000 for v in values_s)
    p95 = ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]
    return f"| {name:<24} | {statistics.median(ms):8.2f} | {statistics.mean(ms):8.2f} | {p95:8.2f} | {len(ms):5d} |"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="30 jobs")
    parser.add_argument("--storage", choices=["local", "none"], default="local")
    args = parser.parse_args()
    jobs = 30 if args.quick else args.jobs

    import websocket
    from vibeboard_runner.executor import Executor
    from vibeboard_runner.registry import NodeRegistry
    from vibeboard_runner.server import ServerConfig, VibeServer
    from vibeboard_runner.storage import LocalStorage

    registry = NodeRegistry.default(embedded=True)
    registry.register("BenchConst", BenchConst)
    registry.register("BenchSink", SinkNode)
    tmp = tempfile.mkdtemp(prefix="vb-service-bench-")
    config = ServerConfig(host="127.0.0.1", port=0, output_dir=os.path.join(tmp, "output"),
                          input_dir=os.path.join(tmp, "input"), temp_dir=os.path.join(tmp, "temp"),
                          db_path=os.path.join(tmp, "jobs.sqlite"),
                          storage=LocalStorage(os.path.join(tmp, "store")) if args.storage == "local" else None)
    server = VibeServer(config, registry=registry).start_in_thread()
    service = server.service
    client_id = uuid.uuid4().hex
    ws = websocket.create_connection(server.url.replace("http", "ws") + f"/ws?clientId={client_id}", timeout=30)
    ws.recv()

    def wait_done(prompt_id):
        while True:
            msg = json.loads(ws.recv())
            if msg["type"] == "executing" and msg["data"].get("node") is None and msg["data"]["prompt_id"] == prompt_id:
                return

    # warm-up (imports, first SQLite pages, caches)
    for i in range(5):
        wait_done(post(server.url + "/prompt", {"prompt": prompt(-i - 1), "client_id": client_id})["prompt_id"])

    server_latency, client_latency, e2e = [], [], []
    for i in range(jobs):
        t0 = time.perf_counter()
        pid = post(server.url + "/prompt", {"prompt": prompt(i), "client_id": client_id})["prompt_id"]
        wait_done(pid)
        t1 = time.perf_counter()
        e2e.append(t1 - t0)
        job_id, submitted, started = service.start_log[-1]
        assert job_id == pid
        server_latency.append(started - submitted)
        client_latency.append(started - t0)

    executor = Executor(registry, output_dir=config.output_dir, input_dir=config.input_dir, temp_dir=config.temp_dir)
    alone = []
    for i in range(jobs):
        t0 = time.perf_counter()
        executor.execute(prompt(100000 + i))  # distinct values: no cache hits, like the served jobs
        alone.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    ids = [post(server.url + "/prompt", {"prompt": prompt(200000 + i), "client_id": client_id})["prompt_id"]
           for i in range(jobs)]
    wait_done(ids[-1])
    burst = (time.perf_counter() - t0) / jobs
    ws.close()
    server.stop_thread()

    overhead = statistics.median(e2e) - statistics.median(alone)
    print(f"\nvibeboard serve overhead, trivial 2-node workflow, {jobs} jobs, storage={args.storage}")
    print("| measure                  | median ms|  mean ms |   p95 ms | jobs  |")
    print("|--------------------------|----------|----------|----------|-------|")
    print(stats_row("submit→start (server)", server_latency))
    print(stats_row("submit→start (client)", client_latency))
    print(stats_row("end-to-end per job", e2e))
    print(stats_row("executor alone", alone))
    print(f"| {'per-job overhead':<24} | {overhead * 1000:8.2f} |          |          |       |")
    print(f"| {'burst throughput':<24} | {burst * 1000:8.2f} |          |          | {jobs:5d} |")
    goal = statistics.median(server_latency) * 1000 <= 20 and overhead * 1000 <= 20
    print(f"\ngoal ≤ 20 ms (submit→start and per-job overhead): {'met' if goal else 'NOT met'}")


if __name__ == "__main__":
    main()
