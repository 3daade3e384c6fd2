"""Signed webhooks: HMAC verified by a loopback receiver, retries with backoff on 500, no retry on 4xx."""
import json
import time

import pytest

from vibeboard_runner import webhooks
from service_helpers import HookReceiver, free_port, http, make_server
from service_nodes import workflow

SECRET = "whsec-test"


class Receiver(HookReceiver):
    """Fails the first `fail_first` deliveries with `status_when_failing`, then answers 200."""

    def __init__(self, fail_first=0, status_when_failing=500):
        self.fail_first, self.status_when_failing = fail_first, status_when_failing
        super().__init__()

    def status_for(self, request: dict) -> int:
        return self.status_when_failing if len(self.requests) <= self.fail_first else 200

    def events(self):
        return [json.loads(r["body"])["event"] for r in self.requests]


def test_job_webhook_signed_and_retried(tmp_path):
    receiver = Receiver(fail_first=2)
    srv = make_server(tmp_path, webhook_secret=SECRET)
    try:
        status, body, _ = http("POST", srv.url + "/vibeboard/jobs",
                               {"workflow": workflow(seconds=0.3), "webhook": {"url": receiver.url, "progress": True}})
        assert status == 201
        deadline = time.time() + 20
        while "job.completed" not in receiver.events() and time.time() < deadline:
            time.sleep(0.05)
        done = [r for r in receiver.requests if json.loads(r["body"])["event"] == "job.completed"]
        assert done, receiver.events()
        request = done[-1]
        headers = request["headers"]
        assert webhooks.verify(SECRET, request["body"], headers["X-VibeBoard-Timestamp"],
                               headers["X-VibeBoard-Signature"])
        assert not webhooks.verify("other-secret", request["body"], headers["X-VibeBoard-Timestamp"],
                                   headers["X-VibeBoard-Signature"])
        assert not webhooks.verify(SECRET, request["body"] + b" ", headers["X-VibeBoard-Timestamp"],
                                   headers["X-VibeBoard-Signature"])
        payload = json.loads(request["body"])
        assert payload["job_id"] == body["job_id"] and payload["status"] == "success"
        assert payload["outputs"][0]["url"].startswith("file://")
        # the first two deliveries got 500 and were retried with the same delivery id
        assert receiver.requests[0]["headers"]["X-VibeBoard-Delivery"] == receiver.requests[1]["headers"][
            "X-VibeBoard-Delivery"]
        assert "job.progress" in receiver.events()
        # failure webhook carries the error
        status, body, _ = http("POST", srv.url + "/vibeboard/jobs",
                               {"workflow": workflow(fail=True), "webhook": receiver.url})
        deadline = time.time() + 20
        while "job.failed" not in receiver.events() and time.time() < deadline:
            time.sleep(0.05)
        failed = json.loads([r for r in receiver.requests if b"job.failed" in r["body"]][0]["body"])
        assert failed["error"]["node_id"] == "3" and "SvcFail" in failed["error"]["exception_message"]
    finally:
        srv.stop_thread()
        receiver.close()


def test_sender_backoff_and_final_4xx():
    results = []
    receiver = Receiver(fail_first=100, status_when_failing=400)
    sender = webhooks.WebhookSender(SECRET, max_attempts=4, backoff_s=0.05, on_result=results.append)
    try:
        sender.send(receiver.url, "job.completed", {"job_id": "a"})
        assert sender.flush(10)
        assert len(receiver.requests) == 1 and results[0]["status"] == 400 and not results[0]["ok"]
        receiver.status_when_failing = 503
        sender.send(receiver.url, "job.completed", {"job_id": "b"})
        assert sender.flush(10)
        assert len(receiver.requests) == 5 and results[1]["attempts"] == 4
        gaps = [b["time"] - a["time"] for a, b in zip(receiver.requests[1:], receiver.requests[2:])]
        assert gaps[1] > gaps[0] * 1.5 and gaps[2] > gaps[1] * 1.5  # exponential
        dead = f"http://127.0.0.1:{free_port()}/x"
        sender.send(dead, "job.failed", {"job_id": "c"})
        assert sender.flush(10)
        assert results[2]["attempts"] == 4 and "Error" in results[2]["error"]
    finally:
        sender.close()
        receiver.close()


def test_verify_rejects_stale_timestamp():
    body = b'{"x":1}'
    ts = str(int(time.time()) - 3600)
    assert not webhooks.verify(SECRET, body, ts, webhooks.sign(SECRET, ts, body))
    ts = str(int(time.time()))
    assert webhooks.verify(SECRET, body, ts, webhooks.sign(SECRET, ts, body))
