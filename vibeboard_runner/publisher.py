"""Output uploads on their own worker threads, so a slow or hanging bucket delays only that job's URLs.

The GPU worker records a finished job with `upload_state='pending'` (same transaction as its history) and
hands the id here; an upload worker pushes its files, writes the URLs into the job row and its history, then
calls `on_published(job)` (the service sends the job's webhook from there, with the URLs). Pending uploads
survive a restart: `start()` queues them again.

Every S3 key is journalled (in the job database) while its upload runs; a failed upload is aborted at once and
keys a killed process left are aborted at the next start, so no multipart upload stays open (upload_journal.py).
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Callable

from .storage import Storage
from .upload_journal import abort_left_open, push_journalled

log = logging.getLogger("vibeboard.publisher")


def public_rows(rows: list) -> list:
    """Rows as clients see them: no server-side paths."""
    return [{k: v for k, v in row.items() if k != "path"} for row in rows or []]


class OutputPublisher:
    def __init__(self, storage: Storage, store, on_published: Callable[[dict], None], workers: int = 2,
                 job_timeout_s: float = 900.0):
        self.storage = storage
        self.store = store
        self.on_published = on_published
        self.workers = max(1, int(workers))
        self.job_timeout_s = float(job_timeout_s)
        self._queue: "queue.Queue" = queue.Queue()
        self._queued: set = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list = []
        self.busy: dict = {}  # thread name → job id being pushed (health)

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        for index in range(self.workers):
            thread = threading.Thread(target=self._run, args=(index == 0,), name=f"vibeboard-upload-{index}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout_s: float = 2.0) -> None:
        """Uploads still running are cut off; they stay `pending` and resume at the next start."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=timeout_s)

    def enqueue(self, job_id: str) -> None:
        with self._lock:
            if job_id in self._queued:
                return
            self._queued.add(job_id)
        self._queue.put(job_id)

    def pending(self) -> int:
        return self._queue.qsize() + sum(1 for job in self.busy.values() if job)

    # --- workers ---------------------------------------------------------------------------------
    def _run(self, first: bool) -> None:
        if first:  # once per start: what a killed process left behind
            self._resume()
        name = threading.current_thread().name
        while not self._stop.is_set():
            try:
                job_id = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            self.busy[name] = job_id
            try:
                self._publish(job_id)
            except Exception:  # a database error (disk full) or a bug: the job stays pending for the next start
                if self._stop.is_set():  # the server is closing its database under us: resumed at the next start
                    log.info("upload of job %s cut off by shutdown", job_id)
                else:
                    log.exception("upload of job %s failed", job_id)
            finally:
                self.busy[name] = None
                with self._lock:
                    self._queued.discard(job_id)

    def _resume(self) -> None:
        try:
            abort_left_open(self.storage, self.store)
            for job_id in self.store.pending_uploads():
                self.enqueue(job_id)
        except Exception:
            log.exception("could not resume pending uploads")

    def _publish(self, job_id: str) -> None:
        job = self.store.get(job_id)
        if job is None or job.get("upload_state") != "pending":
            return
        prefix = ((job.get("spec") or {}).get("output") or {}).get("prefix")
        deadline = time.monotonic() + self.job_timeout_s
        rows = []
        for row in job.get("published") or []:
            if row.get("url") or row.get("upload_error"):  # pushed before a restart
                rows.append(row)
                continue
            if self._stop.is_set():
                return  # stays pending; resumed at the next start
            if time.monotonic() > deadline:
                entry = {k: row.get(k) for k in ("node", "filename", "subfolder", "type")}
                entry["upload_error"] = f"upload timed out (more than {self.job_timeout_s:g} s for this job)"
                rows.append(entry)
                continue
            rows.append(push_journalled(self.storage, self.store, job_id, row, prefix))
        history = job.get("history") or {}
        if isinstance(history.get("vibeboard"), dict):
            history["vibeboard"] = dict(history["vibeboard"], files=public_rows(rows))
        # URLs first, then the webhook (queued in its outbox), then "done": a kill in between re-sends the
        # webhook under the same idempotency key instead of losing it.
        self.store.set_published(job_id, rows, history)
        done = self.store.get(job_id)
        if done is not None:
            self.on_published(done)
        self.store.set_published(job_id, rows, upload_state="done")
