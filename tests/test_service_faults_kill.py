"""kill -9 of a real `vibeboard serve` process in the middle of a job, of a multipart upload to S3 (moto's
server behind a throttling TCP proxy) and of a webhook retry; after the restart nothing is lost or doubled:
the stale multipart upload is aborted and the file pushed again, the killed job is reported failed once, the
pending webhook goes out with the same body, signature and idempotency key."""
import json
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fault_proxy import TcpProxy
from runner import webhooks
from service_helpers import free_port, http, start_server_process
from service_nodes import workflow

moto_server = pytest.importorskip("moto.server")
SECRET = "whsec-kill"


class Receiver:
    def __init__(self):
        self.requests, self.status = [], 503
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append({"headers": self.headers, "body": body, "status": receiver.status})
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def for_job(self, job_id):
        return [r for r in self.requests if json.loads(r["body"])["job_id"] == job_id]


def _wait(predicate, timeout=30, every=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError("condition not reached")


def test_kill_during_job_upload_and_webhook_then_restart(tmp_path):
    port_s3 = free_port()
    moto = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port_s3, verbose=False)
    moto.start()
    import boto3
    s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port_s3}", region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.create_bucket(Bucket="kill")
    proxy = TcpProxy(port_s3)
    receiver = Receiver()
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
        receiver.httpd.shutdown()
        moto.stop()
