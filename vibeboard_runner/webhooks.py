"""Signed webhook delivery off the GPU worker: one lane per receiver, a small pool of delivery threads, and
pending deliveries kept in SQLite so they survive a restart.

Signature: `X-VibeBoard-Signature: sha256=<hex>` where hex = HMAC-SHA256(secret, f"{timestamp}.{body}") and
`X-VibeBoard-Timestamp` is the Unix time (seconds) at which the delivery was created. Body, timestamp and
signature are fixed when a delivery is created, so every retry — after a restart too — sends the same bytes
with the same signature; `Idempotency-Key` (= `X-VibeBoard-Delivery`) tells the receiver it is a repeat.
Retries: connection errors, timeouts, 408, 425, 429 and 5xx, with exponential backoff; other statuses are final
(a 3xx is a failure: redirects are not followed, a moved receiver must be reconfigured).

Lanes: deliveries to one receiver (scheme, host, port) go out in order, one at a time; a receiver that is
slow or dead holds only its own lane (and at most one delivery thread per attempt), never the others.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import sqlite3
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import deque
from typing import Callable, Optional

log = logging.getLogger("vibeboard.webhooks")

SIGNATURE_HEADER = "X-VibeBoard-Signature"
TIMESTAMP_HEADER = "X-VibeBoard-Timestamp"
EVENT_HEADER = "X-VibeBoard-Event"
DELIVERY_HEADER = "X-VibeBoard-Delivery"
IDEMPOTENCY_HEADER = "Idempotency-Key"
ATTEMPT_HEADER = "X-VibeBoard-Attempt"


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


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # urllib then raises HTTPError(3xx): a redirect is not a delivery


def _post(url: str, body: bytes, headers: dict, timeout_s: float, allow_private: Optional[bool] = None) -> int:
    """One POST attempt; returns the HTTP status (raises on connection errors). The address policy is checked
    on every attempt (a name may resolve elsewhere by the time a retry goes out)."""
    from . import netpolicy
    if allow_private is not None:
        with netpolicy.policy(allow_private):
            netpolicy.check_url(url, "webhook")
    else:
        netpolicy.check_url(url, "webhook")
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.build_opener(_NoRedirect).open(request, timeout=timeout_s) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _receiver(url: str) -> tuple:
    parsed = urllib.parse.urlsplit(url)
    return (parsed.scheme, (parsed.hostname or "").lower(), parsed.port)


_OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS webhook_outbox (
    delivery TEXT PRIMARY KEY,
    dedupe_key TEXT UNIQUE,
    url TEXT NOT NULL,
    event TEXT NOT NULL,
    body BLOB NOT NULL,
    timestamp TEXT NOT NULL,
    signature TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
"""


class _Outbox:
    """Pending essential deliveries in SQLite (a table next to the job queue). Rows go when delivered or
    given up; what is left at a restart is sent again, byte for byte."""

    def __init__(self, path: str):
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_OUTBOX_SCHEMA)

    def add(self, item: dict) -> Optional[str]:
        """Insert; returns the delivery id already stored under the same dedupe key, if any."""
        with self._lock:
            if item.get("key"):
                row = self._db.execute("SELECT delivery FROM webhook_outbox WHERE dedupe_key=?",
                                       (item["key"],)).fetchone()
                if row is not None:
                    return row[0]
            self._db.execute(
                "INSERT INTO webhook_outbox (delivery, dedupe_key, url, event, body, timestamp, signature, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (item["delivery"], item.get("key"), item["url"], item["event"],
                                                    item["body"], item["timestamp"], item["signature"], time.time()))
        return None

    def attempted(self, delivery: str, attempts: int) -> None:
        with self._lock:
            self._db.execute("UPDATE webhook_outbox SET attempts=? WHERE delivery=?", (attempts, delivery))

    def remove(self, delivery: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM webhook_outbox WHERE delivery=?", (delivery,))

    def pending(self) -> list:
        with self._lock:
            rows = self._db.execute("SELECT delivery, dedupe_key, url, event, body, timestamp, signature, attempts "
                                    "FROM webhook_outbox ORDER BY created_at").fetchall()
        return [{"delivery": r[0], "key": r[1], "url": r[2], "event": r[3], "body": bytes(r[4]), "timestamp": r[5],
                 "signature": r[6], "attempts": r[7], "essential": True} for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class WebhookSender:
    """`send` never blocks on a receiver. Essential events (job finished) are persisted when `db_path` is
    given; progress events are best effort and dropped when their receiver's lane is backed up."""

    def __init__(self, secret: Optional[str] = None, max_attempts: int = 5, backoff_s: float = 1.0,
                 max_backoff_s: float = 60.0, timeout_s: float = 10.0, queue_size: int = 1000,
                 on_result: Optional[Callable[[dict], None]] = None, db_path: Optional[str] = None,
                 workers: int = 4, allow_private: Optional[bool] = None):
        self.secret = secret or None
        self.max_attempts = max(1, int(max_attempts))
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self.timeout_s = float(timeout_s)
        self.queue_size = int(queue_size)
        self.on_result = on_result
        self.allow_private = allow_private  # None: the process default (netpolicy)
        self._outbox = _Outbox(db_path) if db_path else None
        self._lanes: dict = {}  # receiver → deque of deliveries (head goes first)
        self._busy: set = set()  # receivers with an attempt in flight
        self._count = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        if self._outbox is not None:
            for item in self._outbox.pending():  # left by the previous process: same bytes, same signature
                self._enqueue(item)
        self._threads = [threading.Thread(target=self._run, name=f"vibeboard-webhooks-{i}", daemon=True)
                         for i in range(max(1, int(workers)))]
        for thread in self._threads:
            thread.start()

    # --- queueing --------------------------------------------------------------------------------
    def send(self, url: str, event: str, payload: dict, essential: bool = True,
             key: Optional[str] = None) -> Optional[str]:
        """Queue one delivery; returns its delivery id. `key` makes it idempotent: a second send with the same
        key (a job re-published after a restart) returns the first delivery's id and sends nothing new."""
        if not url:
            return None
        # A keyed delivery has a stable id: sent again after a restart, the receiver sees the same Idempotency-Key.
        delivery = uuid.uuid5(uuid.NAMESPACE_URL, "vibeboard-webhook:" + key).hex if key else uuid.uuid4().hex
        body = json.dumps({"event": event, "delivery": delivery, **payload}, separators=(",", ":"),
                          default=str).encode("utf-8")
        timestamp = str(int(time.time()))
        item = {"url": url, "event": event, "delivery": delivery, "body": body, "timestamp": timestamp,
                "signature": sign(self.secret, timestamp, body) if self.secret else None, "attempts": 0,
                "essential": essential, "key": key}
        with self._cond:
            lane = self._lanes.get(_receiver(url))
            if not essential and (self._count >= self.queue_size or (lane is not None and len(lane) >= 100)):
                log.warning("webhook lane to %s backed up, dropped %s", url, event)
                return None
        if essential and self._outbox is not None:
            try:
                existing = self._outbox.add(item)
            except Exception:  # disk full: still try to deliver from memory
                log.exception("could not persist webhook %s for %s", event, url)
                existing = None
            if existing is not None:
                return existing
        self._enqueue(item)
        return delivery

    def _enqueue(self, item: dict) -> None:
        item["next_at"] = 0.0
        with self._cond:
            self._lanes.setdefault(_receiver(item["url"]), deque()).append(item)
            self._count += 1
            self._cond.notify()

    def _take(self) -> Optional[tuple]:
        """The first receiver that is idle and whose head delivery is due; waits briefly when none is."""
        with self._cond:
            now = time.monotonic()
            soonest = None
            for receiver, lane in self._lanes.items():
                if receiver in self._busy or not lane:
                    continue
                due = lane[0]["next_at"]
                if due <= now:
                    self._busy.add(receiver)
                    return receiver, lane[0]
                soonest = due if soonest is None else min(soonest, due)
            wait = 0.2 if soonest is None else max(0.0, min(0.2, soonest - now))
            self._cond.wait(wait)
        return None

    def _run(self) -> None:
        while not self._stop.is_set():
            taken = self._take()
            if taken is None:
                continue
            receiver, item = taken
            done = True
            try:
                done = self._attempt(item)
            except Exception:  # a bug here must not kill the thread or block the lane
                log.exception("webhook delivery crashed")
            finally:
                with self._cond:
                    self._busy.discard(receiver)
                    lane = self._lanes.get(receiver)
                    if done and lane and lane[0] is item:
                        lane.popleft()
                        self._count -= 1
                        if not lane:
                            del self._lanes[receiver]
                    self._cond.notify_all()

    # --- one attempt -----------------------------------------------------------------------------
    def _attempt(self, item: dict) -> bool:
        """One POST; True when the delivery is finished (delivered or given up), False to retry later."""
        item["attempts"] += 1
        headers = {"Content-Type": "application/json", "User-Agent": "vibeboard-webhook/1",
                   TIMESTAMP_HEADER: item["timestamp"], EVENT_HEADER: item["event"],
                   DELIVERY_HEADER: item["delivery"], IDEMPOTENCY_HEADER: item["delivery"],
                   ATTEMPT_HEADER: str(item["attempts"])}
        if item["signature"]:
            headers[SIGNATURE_HEADER] = item["signature"]
        status, error = 0, None
        try:
            status = _post(item["url"], item["body"], headers, self.timeout_s, self.allow_private)
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        ok = 200 <= status < 300
        final = ok or (status and not _retryable(status)) or item["attempts"] >= self.max_attempts
        if final:
            if self._outbox is not None and item["essential"]:
                try:
                    self._outbox.remove(item["delivery"])
                except Exception:  # closed under us at shutdown: sent again (same id) at the next start
                    if not self._stop.is_set():
                        log.exception("could not clear delivered webhook %s", item["delivery"])
            if not ok:
                log.warning("webhook %s to %s failed: %s", item["event"], item["url"], error)
            if self.on_result is not None:
                self.on_result({"url": item["url"], "event": item["event"], "delivery": item["delivery"], "ok": ok,
                                "attempts": item["attempts"], "status": status, "error": error})
            return True
        if self._outbox is not None and item["essential"]:
            try:
                self._outbox.attempted(item["delivery"], item["attempts"])
            except Exception:
                pass
        delay = min(self.backoff_s * 2 ** (item["attempts"] - 1), self.max_backoff_s)
        item["next_at"] = time.monotonic() + delay
        return False

    # --- waiting, closing ------------------------------------------------------------------------
    def pending(self) -> int:
        with self._cond:
            return self._count

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until queued deliveries are done (tests, shutdown)."""
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if self.pending() == 0:
                return True
            time.sleep(0.02)
        return False

    def close(self, timeout_s: float = 5.0) -> None:
        """Waits up to timeout_s; what is still pending stays in the outbox for the next start."""
        self.flush(timeout_s)
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=1.0)
        if self._outbox is not None:
            self._outbox.close()


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
