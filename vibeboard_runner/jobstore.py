"""Persistent queue and history in SQLite (WAL), so jobs survive a restart of the server.

States: queued → running → success | error | interrupted (| invalid). Restart policy: a job found `running`
when the store opens was cut off by a crash or kill; it is marked `error` with a clear reason (never re-run
on its own: a half-run GPU job may have side effects and could crash the server again in a loop), and the
outputs it had already written (recorded node by node as they finished) stay listed so they are still pushed
and returned. `queued` jobs simply run after the restart.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from typing import Iterable, List, Optional

from .results import execution_error
from .upload_journal import UploadJournalMixin, ensure_schema as ensure_journal_schema

RESTART_REASON = ("The server stopped while this job was running (process killed or crashed); "
                  "the job was not re-run. Outputs written before the stop are kept.")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    number REAL NOT NULL,
    status TEXT NOT NULL,
    prompt TEXT NOT NULL,
    extra_data TEXT NOT NULL,
    outputs_to_execute TEXT NOT NULL,
    client_id TEXT,
    spec TEXT NOT NULL DEFAULT '{}',
    partial_outputs TEXT NOT NULL DEFAULT '{}',
    history TEXT,
    published TEXT,
    error TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS jobs_status_number ON jobs(status, number);
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs(finished_at);
"""  # + the upload journal (upload_journal.ensure_schema)
# Columns added after the first release: (name, SQL type), added to an older database when it opens.
_ADDED_COLUMNS = (("upload_state", "TEXT"),)

DONE_STATES = ("success", "error", "interrupted", "invalid")


def _loads(text, default):
    return default if text is None else json.loads(text)


class Job(dict):
    """A row as a dict with JSON columns decoded."""

    @property
    def queue_item(self) -> list:
        """ComfyUI's 5-element queue item: [number, prompt_id, prompt, extra_data, outputs_to_execute]."""
        return [self["number"], self["id"], self["prompt"], self["extra_data"], self["outputs_to_execute"]]


class JobStore(UploadJournalMixin):  # journal_add / journal_remove / journal_keys
    def __init__(self, path: str, max_history: int = 10000):
        self.path = path
        self.max_history = max_history
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process kills
        self._db.executescript(_SCHEMA)
        ensure_journal_schema(self._db)
        have = {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}
        for name, kind in _ADDED_COLUMNS:
            if name not in have:
                self._db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {kind}")
        self._db.execute("CREATE INDEX IF NOT EXISTS jobs_upload ON jobs(upload_state)")
        self._db.execute("CREATE INDEX IF NOT EXISTS jobs_history_order ON jobs(finished_at, number, id)")
        row = self._db.execute("SELECT MAX(ABS(number)) FROM jobs WHERE ABS(number) < 1e15").fetchone()
        self._counter = int(row[0] or 0) + 1  # (a non-finite number stored by an older server is skipped)

    # --- helpers ---------------------------------------------------------------------------------
    def _row(self, row) -> Optional[Job]:
        if row is None:
            return None
        job = Job(dict(row))
        if float(job["number"]).is_integer():  # ComfyUI shows integer numbers unless a client sent a float
            job["number"] = int(job["number"])
        job["prompt"] = _loads(job["prompt"], {})
        job["extra_data"] = _loads(job["extra_data"], {})
        job["outputs_to_execute"] = _loads(job["outputs_to_execute"], [])
        job["spec"] = _loads(job["spec"], {})
        job["partial_outputs"] = _loads(job["partial_outputs"], {})
        job["history"] = _loads(job["history"], None)
        job["published"] = _loads(job["published"], None)
        job["error"] = _loads(job["error"], None)
        return job

    def next_number(self, front: bool = False) -> float:
        """ComfyUI numbering: increasing counter, negated when `front` so it sorts first."""
        with self._lock:
            number = self._counter
            self._counter += 1
        return -number if front else number

    # --- queue -----------------------------------------------------------------------------------
    def add(self, job_id: str, prompt: dict, extra_data: dict, outputs_to_execute: list,
            number: float, client_id: Optional[str] = None, spec: Optional[dict] = None) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO jobs (id, number, status, prompt, extra_data, outputs_to_execute, client_id, spec,"
                " created_at) VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?)",
                (job_id, number, json.dumps(prompt), json.dumps(extra_data), json.dumps(outputs_to_execute),
                 client_id, json.dumps(spec or {}), time.time()))

    def exists(self, job_id: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM jobs WHERE id=?", (job_id,)).fetchone() is not None

    def claim_next(self) -> Optional[Job]:
        """Lowest number among queued jobs → running (one transaction, so two workers never share a job)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT * FROM jobs WHERE status='queued' ORDER BY number, created_at LIMIT 1").fetchone()
                if row is None:
                    self._db.execute("COMMIT")
                    return None
                now = time.time()
                self._db.execute("UPDATE jobs SET status='running', started_at=? WHERE id=?", (now, row["id"]))
                self._db.execute("COMMIT")
            except Exception:
                self._db.execute("ROLLBACK")
                raise
            job = self._row(row)
            job["status"], job["started_at"] = "running", now
            return job

    def record_node_output(self, job_id: str, node_id: str, ui: dict) -> None:
        """Called on each `executed` event, so a crash later still knows which files this job wrote."""
        with self._lock:
            row = self._db.execute("SELECT partial_outputs FROM jobs WHERE id=?", (job_id,)).fetchone()
            if row is None:
                return
            partial = _loads(row[0], {})
            partial[str(node_id)] = ui
            self._db.execute("UPDATE jobs SET partial_outputs=? WHERE id=?", (json.dumps(partial), job_id))

    def finish(self, job_id: str, status: str, history: dict, published: Optional[list] = None,
               error: Optional[dict] = None, upload_pending: bool = False) -> None:
        """Final record of a run. `upload_pending` marks its outputs for the upload workers (same transaction,
        so a kill right after still finds them to push)."""
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET status=?, history=?, published=?, error=?, finished_at=?, upload_state=? WHERE id=?",
                (status, json.dumps(history, default=str), json.dumps(published, default=str)
                 if published is not None else None, json.dumps(error, default=str) if error else None,
                 time.time(), "pending" if upload_pending else None, job_id))
            self._trim()

    def set_published(self, job_id: str, published: list, history: Optional[dict] = None,
                      upload_state: Optional[str] = None) -> None:
        with self._lock:
            if history is None:
                self._db.execute("UPDATE jobs SET published=?, upload_state=COALESCE(?, upload_state) WHERE id=?",
                                 (json.dumps(published, default=str), upload_state, job_id))
            else:
                self._db.execute(
                    "UPDATE jobs SET published=?, history=?, upload_state=COALESCE(?, upload_state) WHERE id=?",
                    (json.dumps(published, default=str), json.dumps(history, default=str), upload_state, job_id))

    # --- output uploads (vibeboard_runner/publisher.py) ----------------------------------------------------
    def pending_uploads(self) -> List[str]:
        with self._lock:
            return [r[0] for r in self._db.execute(
                "SELECT id FROM jobs WHERE upload_state='pending' ORDER BY finished_at").fetchall()]

    def _trim(self) -> None:
        count = self._db.execute("SELECT COUNT(*) FROM jobs WHERE finished_at IS NOT NULL").fetchone()[0]
        if count > self.max_history:
            self._db.execute(
                "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE finished_at IS NOT NULL "
                "AND upload_state IS NOT 'pending' ORDER BY finished_at LIMIT ?)", (count - self.max_history,))

    def recover_interrupted(self) -> List[Job]:
        """On open: jobs left `running` by a dead process → `error` with RESTART_REASON. Returns them."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM jobs WHERE status='running'").fetchall()
            jobs = [self._row(r) for r in rows]
            for job in jobs:
                error = execution_error(job["id"], RESTART_REASON, "ServerRestart",
                                        executed=sorted(job["partial_outputs"].keys()))
                history = {"prompt": job.queue_item, "outputs": job["partial_outputs"],
                           "status": {"status_str": "error", "completed": False,
                                      "messages": [["execution_error", error]]},
                           "meta": {nid: {"node_id": nid, "display_node": nid, "parent_node": None,
                                          "real_node_id": nid} for nid in job["partial_outputs"]}}
                self._db.execute("UPDATE jobs SET status='error', history=?, error=?, finished_at=? WHERE id=?",
                                 (json.dumps(history), json.dumps(error), time.time(), job["id"]))
                job.update(status="error", history=history, error=error)
            return jobs

    # --- reads -----------------------------------------------------------------------------------
    def get(self, job_id: str) -> Optional[Job]:
        with self._lock:
            return self._row(self._db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone())

    def by_status(self, *statuses: str) -> List[Job]:
        marks = ",".join("?" for _ in statuses)
        with self._lock:
            rows = self._db.execute(f"SELECT * FROM jobs WHERE status IN ({marks}) ORDER BY number, created_at",
                                    statuses).fetchall()
        return [self._row(r) for r in rows]

    def count(self, *statuses: str) -> int:
        marks = ",".join("?" for _ in statuses)
        with self._lock:
            return self._db.execute(f"SELECT COUNT(*) FROM jobs WHERE status IN ({marks})", statuses).fetchone()[0]

    def queue_position(self, job_id: str) -> Optional[int]:
        with self._lock:
            row = self._db.execute("SELECT number, created_at, status FROM jobs WHERE id=?", (job_id,)).fetchone()
            if row is None or row["status"] != "queued":
                return None
            return self._db.execute(
                "SELECT COUNT(*) FROM jobs WHERE status='queued' AND (number < ? OR (number = ? AND created_at < ?))",
                (row["number"], row["number"], row["created_at"])).fetchone()[0]

    def history(self, max_items: Optional[int] = None, offset: Optional[int] = None,
                before: Optional[tuple] = None) -> List[dict]:
        """Finished jobs oldest → newest, as {"id", "history", "cursor"} (only the columns /history needs).
        ComfyUI: with max_items and no offset, the last N; an offset (0 included) skips that many from the
        oldest. `before` (a cursor from an earlier page) gives the max_items entries just older than it."""
        where = "history IS NOT NULL AND finished_at IS NOT NULL"
        with self._lock:
            if before is not None or (max_items is not None and offset is None):
                args: list = []
                if before is not None:  # keyset paging: cheap at any depth
                    where += " AND (finished_at, number, id) < (?, ?, ?)"
                    args = list(before)
                rows = self._db.execute(
                    f"SELECT id, history, finished_at, number FROM jobs WHERE {where} "
                    "ORDER BY finished_at DESC, number DESC, id DESC LIMIT ?",
                    (*args, -1 if max_items is None else int(max_items))).fetchall()[::-1]
            else:
                rows = self._db.execute(
                    f"SELECT id, history, finished_at, number FROM jobs WHERE {where} "
                    "ORDER BY finished_at, number, id LIMIT ? OFFSET ?",
                    (-1 if max_items is None else int(max_items), int(offset or 0))).fetchall()
        return [{"id": r[0], "history": json.loads(r[1]), "cursor": (r[2], r[3], r[0])} for r in rows]

    def has_history_before(self, cursor: tuple) -> bool:
        with self._lock:
            return self._db.execute(
                "SELECT 1 FROM jobs WHERE history IS NOT NULL AND finished_at IS NOT NULL "
                "AND (finished_at, number, id) < (?, ?, ?) LIMIT 1", tuple(cursor)).fetchone() is not None

    # --- deletes ---------------------------------------------------------------------------------
    def delete_queued(self, ids: Optional[Iterable[str]] = None) -> int:
        """Remove pending jobs (all when ids is None). Running jobs are never removed here."""
        with self._lock:
            if ids is None:
                return self._db.execute("DELETE FROM jobs WHERE status='queued'").rowcount
            ids = list(ids)
            return sum(self._db.execute("DELETE FROM jobs WHERE id=? AND status='queued'", (i,)).rowcount
                       for i in ids)

    def delete_history(self, ids: Optional[Iterable[str]] = None) -> int:
        with self._lock:
            if ids is None:
                return self._db.execute(f"DELETE FROM jobs WHERE status IN {DONE_STATES}").rowcount
            return sum(self._db.execute(f"DELETE FROM jobs WHERE id=? AND status IN {DONE_STATES}", (i,)).rowcount
                       for i in list(ids))

    def close(self) -> None:
        with self._lock:
            self._db.close()
