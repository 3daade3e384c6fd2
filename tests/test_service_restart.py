"""Kill the server process (SIGKILL) mid-queue and restart it: queued jobs run, the interrupted one is reported
failed with a clear reason, and no output file is lost."""
import os
import signal
import time

from service_helpers import free_port, http, start_server_process
from service_nodes import workflow

def _start(tmp_path, port):
    return start_server_process(tmp_path, port, ["--storage", "local", "--store-dir", str(tmp_path / "store")])


def _job(url, job_id):
    return http("GET", f"{url}/vibeboard/jobs/{job_id}")[1]


def test_sigkill_mid_queue_then_restart(tmp_path):
    port = free_port()
    proc, url = _start(tmp_path, port)
    try:
        long_job = workflow(value=5, seconds=60.0, kind="png", prefix="long/final")
        # an early output node: written before the slow node starts, must survive the kill
        long_job = {"8": {"class_type": "SvcSave", "inputs": {"value": ["1", 0], "kind": "png", "size_kb": 1,
                                                              "filename_prefix": "long/early"}}, **long_job}
        a = http("POST", url + "/vibeboard/jobs", {"workflow": long_job})[1]["job_id"]
        b = http("POST", url + "/prompt", {"prompt": workflow(value=6, kind="json")})[1]["prompt_id"]
        c = http("POST", url + "/vibeboard/jobs", {"workflow": workflow(value=7, kind="mp4")})[1]["job_id"]
        deadline = time.time() + 30
        while time.time() < deadline:
            job = _job(url, a)
            if job["status"] == "running" and "8" in job.get("partial_outputs", {}):
                break
            time.sleep(0.05)
        assert job["status"] == "running" and job["node"] == "2", job
        assert _job(url, b)["status"] == "queued" and _job(url, c)["queue_position"] == 1
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    early_files = os.listdir(tmp_path / "output" / "long")
    assert len(early_files) == 1
    proc, url = _start(tmp_path, port)
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            states = [_job(url, j)["status"] for j in (a, b, c)]
            if all(s not in ("queued", "running", "uploading") for s in states):
                break
            time.sleep(0.1)
        assert states == ["error", "success", "success"], states
        killed = _job(url, a)
        assert killed["error"]["exception_type"] == "ServerRestart"
        assert "server stopped while this job was running" in killed["error"]["exception_message"]
        # the output written before the kill is listed, pushed to the store, and servable
        out = killed["outputs"][0]
        assert out["node"] == "8" and out["filename"] == early_files[0]
        assert os.path.isfile(out["url"][len("file://"):])
        assert http("GET", url + out["view_url"])[0] == 200
        hist = http("GET", f"{url}/history/{a}")[1][a]
        assert hist["status"]["status_str"] == "error" and hist["outputs"]["8"]["images"][0]["filename"] == early_files[0]
        assert hist["status"]["messages"][-1][1]["exception_type"] == "ServerRestart"
        for job_id in (b, c):
            for row in _job(url, job_id)["outputs"]:
                assert os.path.isfile(row["url"][len("file://"):])
        queue = http("GET", url + "/queue")[1]
        assert queue == {"queue_running": [], "queue_pending": []}
        proc.terminate()  # SIGTERM: clean shutdown, exit status 0
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
