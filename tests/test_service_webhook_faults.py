"""Webhook delivery under faults: a dead and a slow receiver never delay a healthy one; pending deliveries are
kept in SQLite and resumed by the next sender byte for byte (same signature, same idempotency key); a keyed
delivery is never doubled; a redirect is not a delivery."""
import json
import time

from vibeboard_runner import webhooks
from service_helpers import HookReceiver as Receiver
from service_helpers import free_port

SECRET = "whsec-faults"


def _wait(predicate, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_dead_and_slow_receivers_do_not_delay_a_healthy_one():
    slow, good = Receiver(delay_s=0.8), Receiver()
    dead = f"http://127.0.0.1:{free_port()}/hook"
    results = []
    sender = webhooks.WebhookSender(SECRET, max_attempts=3, backoff_s=0.2, timeout_s=0.5, workers=3,
                                    on_result=results.append)
    try:
        for i in range(2):  # the slow (answers after the 0.5 s timeout) and dead lanes fill up first
            sender.send(slow.url, "job.completed", {"job_id": f"s{i}"})
            sender.send(dead, "job.completed", {"job_id": f"d{i}"})
        sent_at = time.monotonic()
        for i in range(6):
            sender.send(good.url, "job.completed", {"job_id": f"g{i}"})
        assert _wait(lambda: len(good.requests) == 6, timeout=5)
        assert good.requests[-1]["time"] - sent_at < 1.0  # not behind the slow or dead receiver
        assert [json.loads(r["body"])["job_id"] for r in good.requests] == [f"g{i}" for i in range(6)]  # in order
        assert sender.flush(20)
        for url in (slow.url, dead):  # each retried to the limit, in order, one at a time
            given_up = [r for r in results if r["url"] == url]
            assert len(given_up) == 2 and all(not r["ok"] and r["attempts"] == 3 for r in given_up)
        assert [json.loads(r["body"])["job_id"] for r in slow.requests] == ["s0"] * 3 + ["s1"] * 3
    finally:
        sender.close(timeout_s=0)
        slow.close()
        good.close()


def test_pending_delivery_resumes_after_restart_with_same_signature(tmp_path):
    db = str(tmp_path / "jobs.sqlite")
    receiver = Receiver(status=503)
    first = webhooks.WebhookSender(SECRET, max_attempts=10, backoff_s=5.0, db_path=db)
    delivery = first.send(receiver.url, "job.completed", {"job_id": "j1", "outputs": []}, key="j1:job.completed")
    assert _wait(lambda: len(receiver.requests) == 1)
    first.close(timeout_s=0)  # the process goes away with the delivery pending
    receiver.status = 200
    second = webhooks.WebhookSender(SECRET, max_attempts=10, backoff_s=5.0, db_path=db)
    try:
        assert _wait(lambda: len(receiver.requests) == 2)
        before, after = receiver.requests
        assert after["body"] == before["body"] and json.loads(after["body"])["delivery"] == delivery
        for header in ("X-VibeBoard-Signature", "X-VibeBoard-Timestamp", "Idempotency-Key", "X-VibeBoard-Delivery"):
            assert after["headers"][header] == before["headers"][header]
        assert after["headers"]["Idempotency-Key"] == delivery
        assert after["headers"]["X-VibeBoard-Attempt"] == "2"  # attempts counted across the restart
        assert webhooks.verify(SECRET, after["body"], after["headers"]["X-VibeBoard-Timestamp"],
                               after["headers"]["X-VibeBoard-Signature"])
        assert second.flush(5)
        # the same job event queued again (a re-published job) carries the same id: receivers deduplicate
        again = second.send(receiver.url, "job.completed", {"job_id": "j1", "outputs": []}, key="j1:job.completed")
        assert again == delivery
    finally:
        second.close(timeout_s=2)
        receiver.close()


def test_redirect_is_not_a_delivery():
    target = Receiver()
    moved = Receiver(status=307, location=target.url)
    results = []
    sender = webhooks.WebhookSender(max_attempts=3, backoff_s=0.05, on_result=results.append)
    try:
        sender.send(moved.url, "job.completed", {"job_id": "r"})
        assert sender.flush(5)
        assert results[0]["ok"] is False and results[0]["status"] == 307 and results[0]["attempts"] == 1
        assert target.requests == []
    finally:
        sender.close(timeout_s=0)
        moved.close()
        target.close()
