"""Dailies: version stacks, review notes, annotations and re-render requests in one SQLite file.

Every job output of a shot becomes a version (v001, v002, …) with its provenance (recipe, parent version).
Status is one of in_review / approved / needs_revision; the latest *approved* version of each shot is what
Sequencer's assembly uses. Notes carry a frame range and a status (open / resolved); annotations are shapes
on 0..1 coordinates (upper-left origin, like Frame.io) with a frame range and a version id. A note whose
re-render landed as a new version resolves only when that version is approved.
"""
from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from typing import List, Optional

from ..common import runtime

STATUSES = ("in_review", "approved", "needs_revision")
NOTE_STATUSES = ("open", "resolved")
SHAPES = ("rectangle", "arrow", "freehand", "text", "ellipse", "line")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
  id TEXT PRIMARY KEY, shot TEXT NOT NULL, number INTEGER NOT NULL, path TEXT NOT NULL,
  frames INTEGER, fps REAL, recipe TEXT NOT NULL, parent_id TEXT, from_note INTEGER,
  status TEXT NOT NULL, created REAL NOT NULL, UNIQUE (shot, number));
CREATE TABLE IF NOT EXISTS notes (
  id INTEGER PRIMARY KEY AUTOINCREMENT, version_id TEXT NOT NULL REFERENCES versions(id),
  start_frame INTEGER NOT NULL, end_frame INTEGER NOT NULL, text TEXT NOT NULL, author TEXT NOT NULL,
  kind TEXT NOT NULL, status TEXT NOT NULL, resolved_by TEXT, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS annotations (
  id INTEGER PRIMARY KEY AUTOINCREMENT, version_id TEXT NOT NULL REFERENCES versions(id),
  note_id INTEGER REFERENCES notes(id), start_frame INTEGER NOT NULL, end_frame INTEGER NOT NULL,
  shape TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS rerenders (
  id INTEGER PRIMARY KEY AUTOINCREMENT, note_id INTEGER NOT NULL REFERENCES notes(id),
  source_version TEXT NOT NULL, request TEXT NOT NULL, status TEXT NOT NULL, result_version TEXT,
  created REAL NOT NULL);
"""


class DailiesError(ValueError):
    """Bad request to the Dailies store (unknown version, bad status, bad frame range or shape)."""


def version_label(number: int) -> str:
    return f"v{number:03d}"


def check_shape(shape: dict) -> dict:
    """A shape on 0..1 coordinates: {"type", "points": [[x, y], ...], "rgba"?, "width"?, "text"?}."""
    if not isinstance(shape, dict) or shape.get("type") not in SHAPES:
        raise DailiesError(f"annotation shape needs a 'type' in {SHAPES}; got {shape!r:.120}")
    points = shape.get("points")
    need = {"rectangle": 2, "ellipse": 2, "arrow": 2, "line": 2, "text": 1, "freehand": 2}[shape["type"]]
    if not isinstance(points, list) or len(points) < need:
        raise DailiesError(f"a {shape['type']} annotation needs at least {need} points [x, y]")
    for p in points:
        if (not isinstance(p, (list, tuple)) or len(p) != 2
                or not all(isinstance(v, (int, float)) and 0.0 <= v <= 1.0 for v in p)):
            raise DailiesError(f"annotation point {p!r} must be [x, y] with 0 <= x, y <= 1 (upper-left origin)")
    if shape["type"] == "text" and not str(shape.get("text", "")).strip():
        raise DailiesError("a text annotation needs 'text'")
    rgba = shape.get("rgba", [1.0, 0.0, 0.0, 1.0])
    if not (isinstance(rgba, list) and len(rgba) == 4):
        raise DailiesError("annotation 'rgba' must be four numbers 0..1")
    return {"type": shape["type"], "points": [[float(x), float(y)] for x, y in points],
            "rgba": [float(c) for c in rgba], "width": float(shape.get("width", 0.004)),
            **({"text": str(shape["text"])} if shape.get("text") else {})}


class DailiesStore:
    """One project's dailies. Each call opens its own short transaction, so the file survives restarts and
    several processes (review page, runner) may use it."""

    def __init__(self, path: str):
        self.path = path
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as db:
            db.execute("PRAGMA journal_mode=WAL")  # readers (the review page) never wait for a writer
            db.executescript(_SCHEMA)

    @contextlib.contextmanager
    def _db(self):
        """One short transaction that holds the write lock from its start (BEGIN IMMEDIATE): two processes
        adding versions of a shot at once never read the same latest number."""
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA foreign_keys = ON")
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()

    # --- versions ---------------------------------------------------------------------------------
    def add_version(self, shot: str, path: str, recipe: Optional[dict] = None, parent_id: Optional[str] = None,
                    frames: Optional[int] = None, fps: Optional[float] = None, from_note: Optional[int] = None,
                    status: str = "in_review") -> dict:
        """The next version of `shot` (v001 first). `parent_id` must be an existing version."""
        if not shot or not str(shot).strip():
            raise DailiesError("a version needs a shot name")
        if status not in STATUSES:
            raise DailiesError(f"status must be one of {STATUSES}; got {status!r}")
        with self._db() as db:
            if parent_id is not None and db.execute("SELECT 1 FROM versions WHERE id=?", (parent_id,)).fetchone() \
                    is None:
                raise DailiesError(f"parent version '{parent_id}' does not exist")
            number = (db.execute("SELECT MAX(number) FROM versions WHERE shot=?", (shot,)).fetchone()[0] or 0) + 1
            vid = f"{shot}_{version_label(number)}"
            db.execute("INSERT INTO versions VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                       (vid, shot, number, os.path.abspath(path), frames, fps, json.dumps(recipe or {}),
                        parent_id, from_note, status, time.time()))
        return self.version(vid)

    def version(self, version_id: str) -> dict:
        with self._db() as db:
            row = db.execute("SELECT * FROM versions WHERE id=?", (version_id,)).fetchone()
        if row is None:
            raise DailiesError(f"no version '{version_id}'")
        return _version_dict(row)

    def stack(self, shot: str) -> List[dict]:
        """All versions of a shot, newest first (the cover is the latest approved)."""
        with self._db() as db:
            rows = db.execute("SELECT * FROM versions WHERE shot=? ORDER BY number DESC", (shot,)).fetchall()
        return [_version_dict(r) for r in rows]

    def shots(self) -> List[str]:
        with self._db() as db:
            return [r[0] for r in db.execute("SELECT DISTINCT shot FROM versions ORDER BY shot")]

    def set_status(self, version_id: str, status: str) -> dict:
        """Review decision. Approving a version made from a note's re-render resolves that note."""
        if status not in STATUSES:
            raise DailiesError(f"status must be one of {STATUSES}; got {status!r}")
        version = self.version(version_id)
        with self._db() as db:
            db.execute("UPDATE versions SET status=? WHERE id=?", (status, version_id))
            if status == "approved" and version["from_note"] is not None:
                db.execute("UPDATE notes SET status='resolved', resolved_by=? WHERE id=?",
                           (version_id, version["from_note"]))
        return self.version(version_id)

    def latest_approved(self, shot: str) -> Optional[dict]:
        """What assembly uses for `shot`: the highest-numbered approved version, or None."""
        with self._db() as db:
            row = db.execute("SELECT * FROM versions WHERE shot=? AND status='approved' ORDER BY number DESC "
                             "LIMIT 1", (shot,)).fetchone()
        if row is None:
            return None
        version = _version_dict(row)
        if not version["media_allowed"]:
            raise DailiesError(f"version '{version['id']}': its media '{version['path']}' is outside the folders "
                               "this server allows")
        return {"path": version["path"], "frames": version["frames"], "recipe": version["recipe"],
                "version": version["label"], "version_id": version["id"],
                "handles": int(version["recipe"].get("handles", 0))}

    # --- notes and annotations --------------------------------------------------------------------
    def _check_range(self, version: dict, start: int, end: int):
        if start < 0 or end < start:
            raise DailiesError(f"frame range {start}..{end} is not a range (start ≥ 0, end ≥ start)")
        if version["frames"] and end >= version["frames"]:
            raise DailiesError(f"frame range {start}..{end} is past the end of {version['id']} "
                               f"({version['frames']} frames)")

    def add_note(self, version_id: str, text: str, start_frame: int, end_frame: int, author: str = "reviewer",
                 kind: str = "human") -> dict:
        version = self.version(version_id)
        if not str(text).strip():
            raise DailiesError("a note needs text")
        self._check_range(version, int(start_frame), int(end_frame))
        with self._db() as db:
            cur = db.execute("INSERT INTO notes (version_id,start_frame,end_frame,text,author,kind,status,created)"
                             " VALUES (?,?,?,?,?,?, 'open', ?)",
                             (version_id, int(start_frame), int(end_frame), str(text), author, kind, time.time()))
            return self.note(cur.lastrowid, db)

    def note(self, note_id: int, db=None) -> dict:
        if db is None:
            with self._db() as own:
                return self.note(note_id, own)
        row = db.execute("SELECT * FROM notes WHERE id=?", (int(note_id),)).fetchone()
        if row is None:
            raise DailiesError(f"no note {note_id}")
        return dict(row)

    def notes(self, version_id: Optional[str] = None, shot: Optional[str] = None) -> List[dict]:
        query, args = "SELECT notes.* FROM notes JOIN versions ON versions.id = notes.version_id", []
        if version_id:
            query, args = query + " WHERE notes.version_id=?", [version_id]
        elif shot:
            query, args = query + " WHERE versions.shot=?", [shot]
        with self._db() as db:
            return [dict(r) for r in db.execute(query + " ORDER BY notes.id", args)]

    def add_annotation(self, version_id: str, shape: dict, start_frame: int, end_frame: int,
                       note_id: Optional[int] = None) -> dict:
        version = self.version(version_id)
        self._check_range(version, int(start_frame), int(end_frame))
        shape = check_shape(shape)
        if note_id is not None and self.note(note_id)["version_id"] != version_id:
            raise DailiesError(f"note {note_id} belongs to another version")
        with self._db() as db:
            cur = db.execute("INSERT INTO annotations (version_id,note_id,start_frame,end_frame,shape,created) "
                             "VALUES (?,?,?,?,?,?)", (version_id, note_id, int(start_frame), int(end_frame),
                                                      json.dumps(shape), time.time()))
            new_id = cur.lastrowid
        return self.annotations(annotation_id=new_id)[0]

    def annotations(self, version_id: Optional[str] = None, note_id: Optional[int] = None,
                    annotation_id: Optional[int] = None) -> List[dict]:
        query, args = "SELECT * FROM annotations", []
        for column, value in (("version_id", version_id), ("note_id", note_id), ("id", annotation_id)):
            if value is not None:
                query += (" AND " if args else " WHERE ") + f"{column}=?"
                args.append(value)
        with self._db() as db:
            rows = db.execute(query + " ORDER BY id", args).fetchall()
        return [{**dict(r), "shape": json.loads(r["shape"])} for r in rows]

    # --- re-render requests -----------------------------------------------------------------------
    def save_rerender(self, note_id: int, source_version: str, request: dict) -> dict:
        with self._db() as db:
            cur = db.execute("INSERT INTO rerenders (note_id,source_version,request,status,created) "
                             "VALUES (?,?,?, 'proposed', ?)", (note_id, source_version, json.dumps(request),
                                                              time.time()))
            rid = cur.lastrowid
        return self.rerender(rid)

    def rerender(self, rerender_id: int) -> dict:
        with self._db() as db:
            row = db.execute("SELECT * FROM rerenders WHERE id=?", (int(rerender_id),)).fetchone()
        if row is None:
            raise DailiesError(f"no re-render request {rerender_id}")
        return {**dict(row), "request": json.loads(row["request"])}

    def land_rerender(self, rerender_id: int, path: str, frames: Optional[int] = None,
                      fps: Optional[float] = None) -> dict:
        """The job's output becomes the next version of the same shot: parent = the version the note was on,
        linked to the note (which stays open until this version is approved)."""
        req = self.rerender(rerender_id)
        source = self.version(req["source_version"])
        version = self.add_version(source["shot"], path, recipe=req["request"]["recipe"], parent_id=source["id"],
                                   frames=frames or source["frames"], fps=fps or source["fps"],
                                   from_note=req["note_id"])
        with self._db() as db:
            db.execute("UPDATE rerenders SET status='landed', result_version=? WHERE id=?",
                       (version["id"], rerender_id))
        return version


def _version_dict(row) -> dict:
    out = dict(row)
    out["recipe"] = json.loads(out["recipe"])
    out["label"] = version_label(out["number"])
    # the database is a file in output/ (a client can upload one): its media paths are confined like a path
    # typed into a node before anything reads or copies them
    out["media_allowed"] = isinstance(out.get("path"), str) and runtime.allowed_by_policy(out["path"])
    return out
