"""kill -9 of a real `vibeboard serve` process in the middle of a job, of a multipart upload to S3 (moto's
server behind a throttling TCP proxy) and of a webhook retry; after the restart nothing is lost or doubled:
the stale multipart upload is aborted and the file pushed again, the killed job is reported failed once, the
pending webhook goes out with the same body, signature and idempotency key."""
import json
import os
import signal
import time

import pytest

from fault_proxy import TcpProxy
from vibeboard_runner import webhooks
from service_helpers import HookReceiver, free_port, http, start_moto, start_server_process
from service_helpers import wait_until as _wait
from service_nodes import workflow

pytest.importorskip("moto.server")
SECRET = "whsec-kill"


def test_kill_during_job_upload_and_webhook_then_restart(tmp_path):
    moto, port_s3, s3 = start_moto("kill")
    proxy = TcpProxy(port_s3)
    receiver = HookReceiver(status=503)
    env = {"VIBEBOARD_S3_BUCKET": "kill", "VIBEBOARD_S3_ENDPOINT": proxy.url, "VIBEBOARD_S3_PREFIX": "k",
           "VIBEBOARD_S3_ACCESS_KEY_ID": "testing", "VIBEBOARD_S3_SECRET_ACCESS_KEY": "testing",
           "VIBEBOARD_S3_MULTIPART_THRESHOLD_MB": "5", "VIBEBOARD_S3_MULTIPART_CHUNK_MB": "5"}
    args = ["--storage", "s3", "--webhook-url", receiver.url, "--webhook-secret", SECRET]
    port = free_port()
    proc, url = start_server_process(tmp_path, port, args, env)
    try:
        # 1: finishes at once; its webhook meets a 503 and waits for a retry
        small = http("POST", url + "/vibeboard/jobs", {"workflow": workflow(1, kind="json")})[1]["job_id"]
        _wait(lambda: receiver.for_job(small))
        # 2: an 11 MiB output, pushed in 5 MiB parts through a 1 MB/s link; 3: runs while 2 uploads
        proxy.rate_bytes_s = 1_000_000
        big = http("POST", url + "/vibeboard/jobs",
                   {"workflow": workflow(2, kind="bin", size_kb=11 * 1024)})[1]["job_id"]
        slow = http("POST", url + "/vibeboard/jobs", {"workflow": workflow(3, seconds=60.0)})[1]["job_id"]
        _wait(lambda: s3.list_multipart_uploads(Bucket="kill").get("Uploads"))
        _wait(lambda: http("GET", f"{url}/vibeboard/jobs/{slow}")[1]["status"] == "running")
        assert http("GET", f"{url}/vibeboard/jobs/{big}")[1]["status"] == "uploading"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    try:
        stale = s3.list_multipart_uploads(Bucket="kill").get("Uploads") or []
        assert len(stale) == 1  # left open by the kill
        first_attempt = receiver.for_job(small)[0]
        proxy.rate_bytes_s = None
        receiver.status = 200
        proc, url = start_server_process(tmp_path, port, args, env)
        try:
            jobs = _wait(lambda: (lambda js: js if all(j["status"] not in ("queued", "running", "uploading")
                                                       for j in js) else None)(
                [http("GET", f"{url}/vibeboard/jobs/{j}")[1] for j in (small, big, slow)]))
            assert [j["status"] for j in jobs] == ["success", "success", "error"]
            assert jobs[2]["error"]["exception_type"] == "ServerRestart"
            out = jobs[1]["outputs"][0]
            assert "upload_error" not in out and out["size"] == 11 * 1024 * 1024
            assert s3.head_object(Bucket="kill", Key=out["key"])["ContentLength"] == 11 * 1024 * 1024
            assert not s3.list_multipart_uploads(Bucket="kill").get("Uploads")  # the stale one was aborted
            # every job's final webhook delivered exactly once (2xx), the resumed one byte for byte
            _wait(lambda: all(any(r["status"] == 200 for r in receiver.for_job(j)) for j in (small, big, slow)))
            time.sleep(0.5)
            for job_id in (small, big, slow):
                delivered = [r for r in receiver.for_job(job_id) if r["status"] == 200]
                assert len(delivered) == 1, (job_id, len(delivered))
            resumed = [r for r in receiver.for_job(small) if r["status"] == 200][0]
            assert resumed["body"] == first_attempt["body"]
            for header in ("X-VibeBoard-Signature", "X-VibeBoard-Timestamp", "Idempotency-Key"):
                assert resumed["headers"][header] == first_attempt["headers"][header]
            assert webhooks.verify(SECRET, resumed["body"], resumed["headers"]["X-VibeBoard-Timestamp"],
                                   resumed["headers"]["X-VibeBoard-Signature"])
            failed = json.loads([r for r in receiver.for_job(slow) if r["status"] == 200][0]["body"])
            assert failed["event"] == "job.failed" and failed["error"]["exception_type"] == "ServerRestart"
            history = http("GET", url + "/history")[1]
            assert sorted(history) == sorted([small, big, slow])
        finally:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(15)
    finally:
        proxy.close()
        receiver.close()
        moto.stop()
