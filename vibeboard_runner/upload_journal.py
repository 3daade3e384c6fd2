"""No multipart upload outlives a killed process. Every storage key is journalled in SQLite while its upload runs;
a failed upload is aborted at once (boto3's transfer manager aborts its own multipart upload; the storage's
`abort_incomplete` catches what it could not), and keys left in the journal by a killed process are aborted at
the next start. Without this an open multipart upload stays billed until the bucket's lifecycle rule runs.

Two users, one mechanism: the server's upload workers (publisher.py; the journal is a table of the job
database, JobStore) and the RunPod worker (runpod_handler.py; `UploadJournal`, a small file in the state folder).
"""
from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from typing import List, Optional

from .storage import Storage, push_one

log = logging.getLogger("vibeboard.uploads")

SCHEMA = """
CREATE TABLE IF NOT EXISTS upload_journal (
    key TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    started_at REAL NOT NULL
);
"""
JOURNAL_NAME = "vibeboard-uploads.sqlite"


class UploadJournalMixin:
    """The journal's rows, on a class that holds `_db` (autocommit sqlite3 connection) and `_lock`."""

    def journal_add(self, key: str, job_id: str) -> None:
        """An upload to `key` is starting: if the process dies now, the next start aborts what it left open."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO upload_journal (key, job_id, started_at) VALUES (?, ?, ?)",
                             (key, job_id, time.time()))

    def journal_remove(self, key: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM upload_journal WHERE key=?", (key,))

    def journal_keys(self) -> List[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT key FROM upload_journal ORDER BY started_at")]


class UploadJournal(UploadJournalMixin):
    """A journal of its own, for a process with no job database (the RunPod worker)."""

    def __init__(self, path: str):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: the row survives a kill -9
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def push_journalled(storage: Storage, journal, job_id: str, row: dict, prefix: Optional[str] = None) -> dict:
    """storage.push_one with the key journalled for the upload's lifetime; a failed upload is aborted at once."""
    entry = push_one(storage, job_id, row, prefix, before=lambda key: journal.journal_add(key, job_id))
    key = entry.get("key")
    if key:
        if entry.get("upload_error"):
            abort_key(storage, journal, key)
        else:
            journal.journal_remove(key)
    return entry


def abort_key(storage: Storage, journal, key: str) -> None:
    """Abort what an upload to `key` left open and drop it from the journal; an unreachable endpoint leaves the
    key journalled for the next start."""
    abort = getattr(storage, "abort_incomplete", None)
    try:
        if callable(abort):
            count = abort(key)
            if count:
                log.warning("aborted %d unfinished multipart upload(s) of %s", count, key)
        journal.journal_remove(key)
    except Exception as exc:
        log.warning("could not abort the unfinished upload of %s: %s", key, exc)


def abort_left_open(storage: Storage, journal) -> int:
    """At start: abort every upload a killed process left in the journal. Returns how many keys it found."""
    keys = journal.journal_keys()
    for key in keys:
        abort_key(storage, journal, key)
    return len(keys)
