"""No multipart upload outlives a killed process. Every storage key is journalled in SQLite while its upload runs;
a failed upload is aborted at once (boto3's transfer manager aborts its own multipart upload; the storage's
`abort_incomplete` catches what it could not), and keys left in the journal by a killed process are aborted at
the next start. Without this an open multipart upload stays billed until the bucket's lifecycle rule runs.

One mechanism for every process that pushes outputs:
  - the server's upload workers (publisher.py): the journal is a table of the job database (JobStore);
  - every other pusher uses `open_state_journal` (a small file in the state folder, opened once per process,
    aborting what a killed process left) and `push_outputs_journalled`: the RunPod worker (runpod_handler.py),
    `vibeboard run --push` (cli.py), remote runs that publish (remote_comfyui.py) and the farm worker
    (farm/worker.py).
Several processes may share one state folder (two `vibeboard run --push` at once, workers on one network
volume): each row names the process that wrote it, and a start aborts only the rows of processes that are gone,
never an upload another live process is still sending.
"""
from __future__ import annotations

import logging
import os
import socket
import sqlite3
import threading
import time
from typing import List, Optional, Tuple

from .storage import Storage, push_one

log = logging.getLogger("vibeboard.uploads")

SCHEMA = """
CREATE TABLE IF NOT EXISTS upload_journal (
    key TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    started_at REAL NOT NULL,
    owner TEXT
);
"""
JOURNAL_NAME = "vibeboard-uploads.sqlite"
# A row written on another host cannot be checked for a live process; it is taken as left open once it is
# older than any upload runs (a worker on a shared network volume must not abort another live worker's upload).
OTHER_HOST_GRACE_S = 6 * 3600

_uploading: set = set()  # keys this process is sending right now (its own rows that are not left open)
_uploading_lock = threading.Lock()


def ensure_schema(db: sqlite3.Connection) -> None:
    """The journal table, with the `owner` column added to a database written by an older version."""
    db.executescript(SCHEMA)
    if "owner" not in {row[1] for row in db.execute("PRAGMA table_info(upload_journal)")}:
        db.execute("ALTER TABLE upload_journal ADD COLUMN owner TEXT")


def _start_ticks(pid: int) -> str:
    """The process's start time (Linux, clock ticks since boot), so a reused pid is not taken for the old one."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return ""


def process_owner(pid: Optional[int] = None) -> str:
    """`host|pid|start ticks` of a process (this one by default): what a journal row records as its writer."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}|{pid}|{_start_ticks(pid)}"


def _left_open(key: str, owner: Optional[str], started_at: float) -> bool:
    """Whether the upload a row records has no live process behind it any more."""
    host, _, rest = (owner or "").partition("|")
    pid_text, _, ticks = rest.partition("|")
    if not owner or not pid_text.isdigit():
        return True  # a row of an older version: its writer is gone by the time anything reads it
    if host != socket.gethostname():
        return time.time() - started_at > OTHER_HOST_GRACE_S
    if owner == process_owner():  # this process's own row: live only while its upload runs
        with _uploading_lock:
            return key not in _uploading
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # EPERM: alive, someone else's
        pass
    return ticks != _start_ticks(pid)  # the pid now names another process


class UploadJournalMixin:
    """The journal's rows, on a class that holds `_db` (autocommit sqlite3 connection) and `_lock`."""

    def journal_add(self, key: str, job_id: str) -> None:
        """An upload to `key` is starting: if the process dies now, the next start aborts what it left open."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO upload_journal (key, job_id, started_at, owner) "
                             "VALUES (?, ?, ?, ?)", (key, job_id, time.time(), process_owner()))

    def journal_remove(self, key: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM upload_journal WHERE key=?", (key,))

    def journal_keys(self) -> List[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT key FROM upload_journal ORDER BY started_at")]

    def journal_rows(self) -> List[Tuple[str, Optional[str], float]]:
        """(key, owner, started_at) of every journalled upload, oldest first."""
        with self._lock:
            return [tuple(r) for r in self._db.execute(
                "SELECT key, owner, started_at FROM upload_journal ORDER BY started_at")]


class UploadJournal(UploadJournalMixin):
    """A journal of its own, for a process with no job database (see `open_state_journal`)."""

    def __init__(self, path: str):
        if path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: the row survives a kill -9
        ensure_schema(self._db)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "UploadJournal":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_state_journal(output_dir: str, storage: Storage) -> UploadJournal:
    """The upload journal in the state folder of `output_dir` (VIBEBOARD_STATE_DIR, or `state/` beside the output
    folder), with what a killed process left open aborted. Once per process start, before its first push; put
    the state folder on a volume that outlives the process (RunPod: the network volume) so the next start finds it."""
    from .state import state_dir
    path = os.path.join(state_dir(output_dir), JOURNAL_NAME)
    try:
        journal = UploadJournal(path)
    except (OSError, sqlite3.Error) as exc:  # read-only or broken state folder: push anyway, outputs come first
        log.warning("cannot open the upload journal %s (%s); uploads go unjournalled: one cut off by a kill stays "
                    "open until the bucket's lifecycle rule", path, exc)
        return UploadJournal(":memory:")
    left = abort_left_open(storage, journal)
    if left:
        log.warning("found %d upload(s) left open by a killed process; aborted what was still open", left)
    return journal


def push_outputs_journalled(storage: Storage, job_id: str, files: list, journal,
                            prefix: Optional[str] = None) -> list:
    """storage.push_outputs with every key journalled while it uploads (`push_journalled`): same rows back
    (key/url/size/content_type, or "upload_error" for a file that failed), nothing left open on a failure."""
    return [push_journalled(storage, journal, job_id, row, prefix) for row in files]


def push_journalled(storage: Storage, journal, job_id: str, row: dict, prefix: Optional[str] = None) -> dict:
    """storage.push_one with the key journalled for the upload's lifetime; a failed upload is aborted at once."""
    started: list = []

    def before(key: str) -> None:
        with _uploading_lock:
            _uploading.add(key)
        started.append(key)
        journal.journal_add(key, job_id)

    try:
        entry = push_one(storage, job_id, row, prefix, before=before)
    finally:
        with _uploading_lock:
            _uploading.difference_update(started)
    key = entry.get("key")
    if key and started:
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
    """At start: abort every upload a killed process left in the journal (rows of live processes stay).
    Returns how many keys it found."""
    keys = [key for key, owner, started_at in journal.journal_rows() if _left_open(key, owner, started_at)]
    for key in keys:
        abort_key(storage, journal, key)
    return len(keys)
