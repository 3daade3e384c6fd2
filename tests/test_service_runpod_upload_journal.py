"""RunPod worker, kill -9 in the middle of pushing an output to S3 (moto's server behind a throttling proxy):
the upload's key was journalled before it started, so the worker's next start aborts the multipart upload the
kill left open; then the same job runs and pushes cleanly. A failed push is aborted at once and leaves no key."""
import json
import os
import signal
import subprocess
import sys

import pytest

from fault_proxy import TcpProxy
from service_helpers import NODES_FILE, start_moto
from service_helpers import wait_until as _wait
from service_nodes import workflow

pytest.importorskip("moto.server")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIB = 1024 * 1024
JOB = {"id": "rp-kill", "input": {"workflow": workflow(2, kind="bin", size_kb=6 * 1024), "output": {"prefix": "rp"}}}


def _worker_env(tmp_path, endpoint):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIBEBOARD_", "RUNPOD_"))}
    env.update({f"VIBEBOARD_{kind.upper()}_DIR": str(tmp_path / kind) for kind in ("output", "input", "temp")})
    env.update({"VIBEBOARD_STATE_DIR": str(tmp_path / "state"), "VIBEBOARD_EXTRA_NODES": NODES_FILE,
                "VIBEBOARD_S3_BUCKET": "rpod", "VIBEBOARD_S3_ENDPOINT": endpoint,
                "VIBEBOARD_S3_ACCESS_KEY_ID": "testing", "VIBEBOARD_S3_SECRET_ACCESS_KEY": "testing",
                "VIBEBOARD_S3_MULTIPART_THRESHOLD_MB": "5", "VIBEBOARD_S3_MULTIPART_CHUNK_MB": "5",
                "VIBEBOARD_S3_MAX_ATTEMPTS": "1", "PYTHONPATH": ROOT})
    return env


def _journal(tmp_path):
    from vibeboard_runner.upload_journal import JOURNAL_NAME, UploadJournal
    journal = UploadJournal(str(tmp_path / "state" / JOURNAL_NAME))
    try:
        return journal.journal_keys()
    finally:
        journal.close()


def _open_uploads(s3):
    return s3.list_multipart_uploads(Bucket="rpod").get("Uploads") or []


def test_kill_during_push_then_the_next_start_aborts_the_open_upload(tmp_path, monkeypatch):
    moto, port, s3 = start_moto("rpod")
    proxy = TcpProxy(port)
    proxy.rate_bytes_s = 500_000  # a 5 MiB part takes ~10 s: the kill lands inside it
    script = ("import json, sys; from vibeboard_runner.runpod_handler import handler; "
              "print(json.dumps(handler(json.loads(sys.argv[1]))))")
    proc = subprocess.Popen([sys.executable, "-c", script, json.dumps(JOB)], cwd=ROOT,
                            env=_worker_env(tmp_path, proxy.url), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait(lambda: _open_uploads(s3), timeout=60)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        proxy.close()
    try:
        (stale,) = _open_uploads(s3)
        assert stale["Key"].startswith("rp/rp-kill/9/")
        assert _journal(tmp_path) == [stale["Key"]]  # recorded before the upload started
        # the next start of a worker on the same state folder (in this process, straight to moto)
        from vibeboard_runner import runpod_handler
        for key, value in _worker_env(tmp_path, f"http://127.0.0.1:{port}").items():
            monkeypatch.setenv(key, value)
        monkeypatch.setattr(runpod_handler, "_state", {})
        runpod_handler._runtime()
        assert _open_uploads(s3) == [] and _journal(tmp_path) == []
        out = runpod_handler.handler(JOB)
        assert out.get("status") == "success", out
        (row,) = out["outputs"]
        assert s3.head_object(Bucket="rpod", Key=row["key"])["ContentLength"] == 6 * MIB
        assert _open_uploads(s3) == [] and _journal(tmp_path) == []
    finally:
        runpod_handler._state.get("journal") and runpod_handler._state["journal"].close()
        moto.stop()


def test_a_failed_push_is_aborted_at_once_and_leaves_no_journal_entry(tmp_path, monkeypatch):
    moto, port, s3 = start_moto("rpod")
    proxy = TcpProxy(port)
    proxy.cut_after = 2 * MIB  # every part's connection drops half-way (retries too): the upload fails
    from vibeboard_runner import runpod_handler
    for key, value in _worker_env(tmp_path, proxy.url).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(runpod_handler, "_state", {})
    try:
        out = runpod_handler.handler({"id": "rp-cut", "input": dict(JOB["input"], workflow=workflow(
            2, kind="bin", size_kb=11 * 1024))})
        assert "could not be uploaded" in out.get("error", ""), out
        assert proxy.cuts >= 1 and out["outputs"][0]["key"].startswith("rp/rp-cut/9/")
        assert _open_uploads(s3) == [] and _journal(tmp_path) == []
    finally:
        runpod_handler._state.get("journal") and runpod_handler._state["journal"].close()
        proxy.close()
        moto.stop()
