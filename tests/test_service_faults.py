"""Fault injection on loopback, in process: a full disk under the queue, a dead or stuck GPU worker, a hanging
or connection-cutting S3 endpoint (a TCP proxy in front of moto's real S3 server). The queue keeps moving,
nothing is lost, health says what is wrong."""
import os
import sqlite3
import subprocess
import threading
import time

import pytest

from fault_proxy import TcpProxy
from service_helpers import http, make_server, start_moto, wait_history
from service_helpers import wait_until as _wait
from service_nodes import workflow

pytest.importorskip("moto.server")


def _health(srv):
    return http("GET", srv.url + "/vibeboard/health")


def _job(srv, job_id):
    return http("GET", f"{srv.url}/vibeboard/jobs/{job_id}")[1]


def _final(srv, job_id, timeout=20):
    return _wait(lambda: (lambda j: j if j["status"] not in ("queued", "running", "uploading") else None)(
        _job(srv, job_id)), timeout)


def test_full_disk_during_claim_keeps_the_worker_and_health_says_so(tmp_path):
    srv = make_server(tmp_path)
    full = threading.Event()
    real_claim = srv.store.claim_next

    def claim_next():
        if full.is_set():
            raise sqlite3.OperationalError("database or disk is full")
        return real_claim()

    srv.store.claim_next = claim_next
    try:
        full.set()
        status, body, _ = http("POST", srv.url + "/prompt", {"prompt": workflow(3, kind="json")})
        assert status == 200, body
        status, health, _ = _wait(lambda: (lambda r: r if r[0] == 503 else None)(_health(srv)))
        assert health["worker"]["state"] == "failing" and health["worker"]["alive"] is True
        assert "disk is full" in health["worker"]["fault"]["message"]
        stats = http("GET", srv.url + "/system_stats")[1]
        assert stats["worker"]["ok"] is False
        full.clear()  # space freed: the same worker thread picks the job up
        entry = wait_history(srv.url, body["prompt_id"])
        assert entry["status"]["status_str"] == "success"
        status, health, _ = _wait(lambda: (lambda r: r if r[0] == 200 else None)(_health(srv)))
        assert health["worker"]["state"] == "idle" and "fault" not in health["worker"]
    finally:
        srv.stop_thread()


def test_submit_on_a_full_disk_is_a_503_not_a_500(tmp_path):
    srv = make_server(tmp_path)

    def add(*args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    real_add, srv.store.add = srv.store.add, add
    try:
        for path, body in (("/prompt", {"prompt": workflow(1)}), ("/vibeboard/jobs", {"workflow": workflow(1)})):
            status, reply, _ = http("POST", srv.url + path, body)
            assert status == 503 and reply["error"]["type"] == "queue_unavailable", reply
            assert "disk is full" in reply["error"]["message"]
        srv.store.add = real_add
        status, reply, _ = http("POST", srv.url + "/prompt", {"prompt": workflow(2)})
        assert status == 200 and wait_history(srv.url, reply["prompt_id"])["status"]["status_str"] == "success"
    finally:
        srv.stop_thread()


def test_a_locked_database_during_status_counts_does_not_stop_jobs(tmp_path):
    srv = make_server(tmp_path)
    locked = threading.Event()
    real_count = srv.store.count

    def count(*statuses):
        if locked.is_set():
            raise sqlite3.OperationalError("database is locked")
        return real_count(*statuses)

    srv.store.count = count
    try:
        locked.set()
        status, body, _ = http("POST", srv.url + "/prompt", {"prompt": workflow(5, kind="json")})
        assert status == 200, body
        assert wait_history(srv.url, body["prompt_id"])["status"]["status_str"] == "success"
        status, health, _ = _health(srv)
        assert status == 503 and "database is locked" in health["worker"]["queue_error"]
        locked.clear()
        assert _health(srv)[0] == 200 and srv.service.health()["alive"]
    finally:
        srv.stop_thread()


def test_an_unserialisable_event_does_not_end_websocket_delivery(tmp_path):
    from service_helpers import WsClient
    srv = make_server(tmp_path)
    try:
        ws = WsClient(srv.url)
        loop = {}
        loop["self"] = loop  # json.dumps raises ValueError (circular reference)
        srv.hub.emit("custom", loop, None)
        status, body, _ = http("POST", srv.url + "/prompt", {"prompt": workflow(1), "client_id": ws.client_id})
        assert status == 200
        ws.until_done(body["prompt_id"], timeout=20)
        ws.close()
    finally:
        srv.stop_thread()


def test_a_failed_final_record_is_retried_not_lost(tmp_path):
    srv = make_server(tmp_path)
    real_finish, calls = srv.store.finish, []

    def finish(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 1:
            raise sqlite3.OperationalError("database or disk is full")
        return real_finish(*args, **kwargs)

    srv.store.finish = finish
    try:
        ids = [http("POST", srv.url + "/prompt", {"prompt": workflow(v, kind="json")})[1]["prompt_id"]
               for v in (1, 2)]
        for prompt_id in ids:
            assert wait_history(srv.url, prompt_id)["status"]["status_str"] == "success"
        assert calls[:2] == [ids[0], ids[0]]  # retried before the next job was recorded
        history = http("GET", srv.url + "/history")[1]
        assert sorted(history) == sorted(ids)
    finally:
        srv.stop_thread()


def test_health_reports_a_stuck_and_a_dead_worker(tmp_path):
    srv = make_server(tmp_path, worker_stuck_s=0.3)
    try:
        assert _health(srv)[0] == 200
        job_id = http("POST", srv.url + "/prompt", {"prompt": workflow(1, seconds=1.2, quiet=True)})[1]["prompt_id"]
        status, health, _ = _wait(lambda: (lambda r: r if r[0] == 503 else None)(_health(srv)))
        assert health["worker"]["state"] == "stuck" and health["worker"]["running"] == job_id
        wait_history(srv.url, job_id)
        _wait(lambda: _health(srv)[0] == 200)
        service = srv.service
        corpse = threading.Thread(target=lambda: None)
        corpse.start()
        corpse.join()
        live, service._thread = service._thread, corpse  # as if the worker thread had died
        try:
            status, health, _ = _health(srv)
            assert status == 503 and health["worker"]["state"] == "dead"
        finally:
            service._thread = live
    finally:
        srv.stop_thread()


def _mount_tmpfs(path, size="2m"):
    os.makedirs(path, exist_ok=True)
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                              capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def test_full_tmpfs_fails_the_job_cleanly_and_the_queue_recovers(tmp_path):
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk):
        pytest.skip("cannot mount a tmpfs here (needs root); the injected ENOSPC tests cover the worker")
    try:
        srv = make_server(tmp_path, output_dir=str(disk / "output"), db_path=str(disk / "jobs.sqlite"))
        try:
            blocker = http("POST", srv.url + "/prompt", {"prompt": workflow(1, seconds=0.6)})[1]["prompt_id"]
            queued = [http("POST", srv.url + "/prompt", {"prompt": workflow(v, kind="bin", size_kb=64)}
                           )[1]["prompt_id"] for v in (2, 3)]
            filler = disk / "filler"
            with open(filler, "wb", buffering=0) as handle:  # fill the disk while the jobs wait in the queue
                try:
                    while True:
                        handle.write(b"\0" * 65536)
                except OSError:
                    pass
            time.sleep(1.5)  # the queued jobs meet the full disk
            assert srv.service.health()["alive"]
            filler.unlink()
            later = http("POST", srv.url + "/prompt", {"prompt": workflow(4, kind="json")})[1]["prompt_id"]
            entries = {pid: wait_history(srv.url, pid, timeout=30) for pid in [blocker, *queued, later]}
            assert entries[later]["status"]["status_str"] == "success"
            for pid in queued:  # each ran once: failed on ENOSPC with a message, or succeeded
                status = entries[pid]["status"]
                if status["status_str"] == "error":
                    message = status["messages"][-1][1]["exception_message"]
                    assert "No space left" in message or "disk" in message, message
            history = http("GET", srv.url + "/history")[1]
            assert sorted(history) == sorted(entries)
            _wait(lambda: _health(srv)[0] == 200)
        finally:
            srv.stop_thread()
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True, timeout=10)


# --- S3 endpoint faults ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def moto_s3():
    server, port, client = start_moto("faults")
    yield port, client
    server.stop()


def _s3(endpoint, **kw):
    from vibeboard_runner.storage import S3Storage
    return S3Storage("faults", prefix="f", endpoint_url=endpoint, region_name="auto", access_key_id="testing",
                     secret_access_key="testing", **kw)


def test_hanging_s3_endpoint_delays_only_that_jobs_urls(tmp_path, moto_s3):
    port, client = moto_s3
    proxy = TcpProxy(port)
    storage = _s3(proxy.url, connect_timeout_s=0.5, read_timeout_s=0.5, max_attempts=1, upload_attempts=1)
    srv = make_server(tmp_path, storage=storage)
    try:
        proxy.mode = "hang"
        a = http("POST", srv.url + "/vibeboard/jobs", {"workflow": workflow(1)})[1]["job_id"]
        b = http("POST", srv.url + "/vibeboard/jobs", {"workflow": workflow(2, seconds=0.2)})[1]["job_id"]
        # b runs and is recorded while a's upload hangs: the GPU worker never waits for the bucket
        assert wait_history(srv.url, b, timeout=10)["status"]["status_str"] == "success"
        assert _job(srv, a)["status"] == "uploading" and _job(srv, a)["run_status"] == "success"
        job_a = _final(srv, a, timeout=20)
        assert job_a["status"] == "success" and "upload_error" in job_a["outputs"][0]
        proxy.mode = "pass"
        job_b = _final(srv, b, timeout=20)
        assert job_b["status"] == "success"
        c = http("POST", srv.url + "/vibeboard/jobs", {"workflow": workflow(3)})[1]["job_id"]
        job_c = _final(srv, c)
        assert job_c["outputs"][0]["url"] and "upload_error" not in job_c["outputs"][0]
        client.head_object(Bucket="faults", Key=job_c["outputs"][0]["key"])
        assert _health(srv)[0] == 200
    finally:
        srv.stop_thread()
        proxy.close()


def test_cut_multipart_upload_is_aborted(tmp_path, moto_s3):
    port, client = moto_s3
    proxy = TcpProxy(port)
    mib = 1024 * 1024
    storage = _s3(proxy.url, max_attempts=1, upload_attempts=1, multipart_threshold=5 * mib,
                  multipart_chunksize=5 * mib)
    srv = make_server(tmp_path, storage=storage)
    try:
        proxy.cut_after = 2 * mib  # every part's connection drops half-way (retries too)
        job_id = http("POST", srv.url + "/vibeboard/jobs",
                      {"workflow": workflow(1, kind="bin", size_kb=11 * 1024)})[1]["job_id"]
        job = _final(srv, job_id, timeout=30)
        assert "upload_error" in job["outputs"][0], job["outputs"]
        assert proxy.cuts >= 1
        assert not client.list_multipart_uploads(Bucket="faults").get("Uploads")
        assert srv.store.journal_keys() == []
    finally:
        srv.stop_thread()
        proxy.close()


def test_abort_incomplete_closes_a_stale_multipart_upload(moto_s3):
    port, client = moto_s3
    storage = _s3(f"http://127.0.0.1:{port}")
    key = "f/stale-job/9/out.bin"
    client.create_multipart_upload(Bucket="faults", Key=key)
    client.create_multipart_upload(Bucket="faults", Key=key + ".other")
    assert storage.abort_incomplete(key) == 1
    left = [u["Key"] for u in client.list_multipart_uploads(Bucket="faults").get("Uploads") or []]
    assert left == [key + ".other"]
    storage.abort_incomplete(key + ".other")
