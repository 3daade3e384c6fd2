"""Review fixes in the job service (worker thread vs server thread)."""
import threading
import time

import executor_nodes as N
from vibeboard_runner.executor import Executor
from vibeboard_runner.jobstore import JobStore
from vibeboard_runner.service import JobService


class GatedExecutor(Executor):
    """Holds each job between 'claimed by the worker' and 'executor started' until the test opens the gate."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.claimed = threading.Event()
        self.gate = threading.Event()

    def execute(self, *args, **kwargs):
        self.claimed.set()
        self.gate.wait(10)
        return super().execute(*args, **kwargs)


def test_interrupt_right_after_the_job_starts_is_not_lost(tmp_path):
    # The executor resets its interrupt flag when a prompt starts (as ComfyUI does). An interrupt for the
    # running prompt that arrives between the worker claiming it and the executor starting must still stop it.
    N.CALLS.clear()
    executor = GatedExecutor(N.registry(), output_dir=tmp_path / "o", input_dir=tmp_path / "i",
                             temp_dir=tmp_path / "t")
    store = JobStore(str(tmp_path / "jobs.sqlite"))
    service = JobService(executor, store, {"output": str(tmp_path / "o"), "input": str(tmp_path / "i"),
                                           "temp": str(tmp_path / "t")})
    service.start()
    try:
        prompt = {"1": {"class_type": "Slow", "inputs": {"steps": 200}},
                  "2": {"class_type": "Record", "inputs": {"value": ["1", 0]}}}
        job_id, _ = service.submit(prompt)
        assert executor.claimed.wait(10)
        assert service.interrupt(job_id) is True
        executor.gate.set()
        deadline = time.time() + 20
        while time.time() < deadline and store.get(job_id)["status"] in ("queued", "running"):
            time.sleep(0.02)
        assert store.get(job_id)["status"] == "interrupted"
        assert ("Slow", 200) not in N.CALLS
    finally:
        service.stop()
        store.close()


class SlowStorage:
    """Local storage whose uploads take a while (an R2 push of a big MP4)."""

    def __init__(self, inner, delay_s):
        self.inner, self.delay_s = inner, delay_s

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def put_file(self, path, key, content_type=None):
        time.sleep(self.delay_s)
        return self.inner.put_file(path, key, content_type)


def test_history_is_stored_before_execution_success_goes_out(tmp_path):
    # Clients (the ComfyUI frontend among them) treat execution_success as "done" and fetch /history next;
    # with a slow output push the entry must already be there.
    from vibeboard_runner.storage import LocalStorage
    from service_helpers import WsClient, http, make_server
    from service_nodes import workflow
    server = make_server(tmp_path, storage=SlowStorage(LocalStorage(str(tmp_path / "store")), 0.6))
    try:
        ws = WsClient(server.url)
        status, body, _ = http("POST", server.url + "/prompt", {"prompt": workflow(5), "client_id": ws.client_id})
        assert status == 200, body
        prompt_id = body["prompt_id"]
        ws.until(lambda m: m["type"] == "execution_success" and m["data"].get("prompt_id") == prompt_id)
        status, history, _ = http("GET", f"{server.url}/history/{prompt_id}")
        assert prompt_id in history and history[prompt_id]["status"]["status_str"] == "success"
        done = ws.until_done(prompt_id)
        types = [m["type"] for m in done]
        assert types.index("execution_success") < len(types) - 1  # executing null still comes last
        ws.close()
    finally:
        server.stop_thread()


class CrashingExecutor:
    def execute(self, prompt, prompt_id=None, on_event=None, **kwargs):
        on_event("execution_start", {"prompt_id": prompt_id})
        raise RuntimeError("executor bug")

    def interrupt(self):
        pass


def test_executor_crash_still_ends_with_error_then_executing_null(tmp_path):
    store = JobStore(str(tmp_path / "jobs.sqlite"))
    sent = []
    service = JobService(CrashingExecutor(), store, {"output": str(tmp_path), "input": str(tmp_path),
                                                     "temp": str(tmp_path)},
                         emit=lambda event, data, sid: sent.append((event, data, sid)))
    service.start()
    try:
        job_id, _ = service.submit({"1": {"class_type": "X", "inputs": {}}}, client_id="c1")
        deadline = time.time() + 10
        while time.time() < deadline and not any(e == "executing" for e, _d, _s in sent):
            time.sleep(0.02)
        mine = [(e, d) for e, d, sid in sent if sid == "c1"]
        assert [e for e, _d in mine] == ["execution_start", "execution_error", "executing"]
        assert mine[-1][1] == {"node": None, "prompt_id": job_id}
        assert "executor bug" in mine[1][1]["exception_message"]
        assert store.get(job_id)["status"] == "error"
    finally:
        service.stop()
        store.close()


def test_job_that_became_invalid_while_queued_reports_an_execution_error(tmp_path):
    # Valid at submit, its input file deleted before it ran: ComfyUI clients must see why it failed.
    import numpy as np
    from PIL import Image
    from service_helpers import WsClient, http, make_server, wait_history
    from service_nodes import workflow
    server = make_server(tmp_path)
    try:
        plate = tmp_path / "input" / "plate.png"
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(plate)
        ws = WsClient(server.url)
        status, body, _ = http("POST", server.url + "/prompt", {"prompt": workflow(1, seconds=0.5)})
        assert status == 200, body
        prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": "plate.png"}},
                  "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
        status, body, _ = http("POST", server.url + "/prompt", {"prompt": prompt, "client_id": ws.client_id})
        assert status == 200, body
        prompt_id = body["prompt_id"]
        plate.unlink()
        messages = ws.until_done(prompt_id)
        errors = [m for m in messages if m["type"] == "execution_error"]
        assert errors and errors[0]["data"]["prompt_id"] == prompt_id
        assert errors[0]["data"]["node_id"] == "1" and "plate.png" in errors[0]["data"]["exception_message"]
        entry = wait_history(server.url, prompt_id)
        assert entry["status"]["status_str"] == "error"
        assert any(m[0] == "execution_error" for m in entry["status"]["messages"])
        ws.close()
    finally:
        server.stop_thread()
