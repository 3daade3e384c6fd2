"""Signed webhook delivery on a background thread, so a slow receiver never holds up the GPU worker.

Signature: `X-VibeBoard-Signature: sha256=<hex>` where hex = HMAC-SHA256(secret, f"{timestamp}.{body}") and
`X-VibeBoard-Timestamp` is the Unix time in seconds; receivers should reject stale timestamps (replays).
Retries: connection errors, 408, 429 and 5xx are retried with exponential backoff; other 4xx are final.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
import uuid
from typing import Callable, Optional

log = logging.getLogger("vibeboard.webhooks")

SIGNATURE_HEADER = "X-VibeBoard-Signature"
TIMESTAMP_HEADER = "X-VibeBoard-Timestamp"
EVENT_HEADER = "X-VibeBoard-Event"
DELIVERY_HEADER = "X-VibeBoard-Delivery"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, body: bytes, timestamp: str, signature: str, tolerance_s: float = 300.0,
           now: Optional[float] = None) -> bool:
    """Receiver side check (also used by the tests): right HMAC and a fresh timestamp."""
    try:
        age = abs((time.time() if now is None else now) - float(timestamp))
    except (TypeError, ValueError):
        return False
    if age > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature or "")


def _retryable(status: int) -> bool:
    return status in (408, 425, 429) or status >= 500


class WebhookSender:
    """Queue of deliveries drained by one daemon thread. `send` never blocks (drops progress events when full)."""

    def __init__(self, secret: Optional[str] = None, max_attempts: int = 5, backoff_s: float = 1.0,
                 max_backoff_s: float = 60.0, timeout_s: float = 10.0, queue_size: int = 1000,
                 on_result: Optional[Callable[[dict], None]] = None):
        self.secret = secret or None
        self.max_attempts = max(1, int(max_attempts))
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self.timeout_s = float(timeout_s)
        self.on_result = on_result
        self._queue: "queue.Queue" = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vibeboard-webhooks", daemon=True)
        self._thread.start()

    def send(self, url: str, event: str, payload: dict, essential: bool = True,
             key: Optional[str] = None) -> Optional[str]:
        """Queue one delivery; returns its delivery id. Non-essential (progress) events are dropped when busy."""
        if not url:
            return None
        delivery = uuid.uuid4().hex
        item = {"url": url, "event": event, "payload": payload, "delivery": delivery}
        try:
            if essential:
                self._queue.put(item, timeout=5.0)
            else:
                self._queue.put_nowait(item)
        except queue.Full:
            log.warning("webhook queue full, dropped %s for %s", event, url)
            return None
        return delivery

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                item = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self._deliver(item)
            except Exception:  # a bug here must not kill the thread
                log.exception("webhook delivery crashed")
            finally:
                self._queue.task_done()

    def _deliver(self, item: dict) -> None:
        body = json.dumps({"event": item["event"], "delivery": item["delivery"], **item["payload"]},
                          separators=(",", ":"), default=str).encode("utf-8")
        delay = self.backoff_s
        result = {"url": item["url"], "event": item["event"], "delivery": item["delivery"], "ok": False}
        for attempt in range(1, self.max_attempts + 1):
            timestamp = str(int(time.time()))
            headers = {"Content-Type": "application/json", "User-Agent": "vibeboard-webhook/1",
                       TIMESTAMP_HEADER: timestamp, EVENT_HEADER: item["event"],
                       DELIVERY_HEADER: item["delivery"]}
            if self.secret:
                headers[SIGNATURE_HEADER] = sign(self.secret, timestamp, body)
            status, error = 0, None
            try:
                request = urllib.request.Request(item["url"], data=body, headers=headers, method="POST")
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    status = response.status
            except urllib.error.HTTPError as exc:
                status, error = exc.code, f"HTTP {exc.code}"
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
            result.update(attempts=attempt, status=status, error=error)
            if 200 <= status < 300:
                result["ok"] = True
                break
            if status and not _retryable(status):
                break
            if attempt < self.max_attempts and not self._stop.is_set():
                self._stop.wait(delay)
                delay = min(delay * 2, self.max_backoff_s)
        if not result["ok"]:
            log.warning("webhook %s to %s failed: %s", item["event"], item["url"], result.get("error"))
        if self.on_result is not None:
            self.on_result(result)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until queued deliveries are done (tests, shutdown)."""
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if self._queue.unfinished_tasks == 0:
                return True
            time.sleep(0.02)
        return False

    def close(self, timeout_s: float = 5.0) -> None:
        self.flush(timeout_s)
        self._stop.set()
        self._thread.join(timeout=1.0)


class ProgressThrottle:
    """At most one progress webhook per job every `interval_s` seconds (the last one still goes out)."""

    def __init__(self, interval_s: float = 1.0):
        self.interval_s = interval_s
        self._last: dict = {}

    def due(self, job_id: str) -> bool:
        now = time.monotonic()
        if now - self._last.get(job_id, 0.0) >= self.interval_s:
            self._last[job_id] = now
            return True
        return False

    def forget(self, job_id: str) -> None:
        self._last.pop(job_id, None)
