"""Review fixes in the job service (worker thread vs server thread)."""
import threading
import time

import executor_nodes as N
from runner.executor import Executor
from runner.jobstore import JobStore
from runner.service import JobService


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
