"""Where visual-analysis results go: a JSON file per asset and a small SQLite table, behind one adapter
interface so the Script Lab asset database (built separately) can plug in as another sink without this
module knowing it.

    from vibeboard.managed_api import sidecar
    sidecar.register_sink("assetdb", lambda: MyAssetDbSink())   # any object with write(record) -> str
    VIBEBOARD_VISION_SINKS=json,sqlite,assetdb                     # which sinks a run writes to

The `dailies` sink puts the analysis on a Dailies version as a machine note (asset_id = the version id,
record["dailies_project"] = the Dailies project).
"""
from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from typing import Callable, Dict, List, Protocol

from ..common import runtime


class AnalysisSink(Protocol):
    def write(self, record: dict) -> str:
        """Store one analysis record; return where it went (a path or an id) for the node's report."""


_SAFE_ID = re.compile(r"[^A-Za-z0-9._-]+")


def safe_asset_id(asset_id: str) -> str:
    """An asset id usable as a file name: path separators and other odd characters become '_'."""
    cleaned = _SAFE_ID.sub("_", (asset_id or "").strip()).strip("._")
    return cleaned[:120] or "asset"


def default_state_dir() -> str:
    return os.path.dirname(runtime.output_directory())


class JsonSink:
    """<output>/vibeboard/vision/<asset>.json — the latest analysis of each asset, easy to read and diff."""

    def __init__(self, folder: str = ""):
        self.folder = folder or os.path.join(runtime.output_directory(), "vibeboard", "vision")

    def write(self, record: dict) -> str:
        os.makedirs(self.folder, exist_ok=True)
        path = os.path.join(self.folder, safe_asset_id(record["asset_id"]) + ".json")
        tmp = path + f".partial-{os.getpid()}"
        with open(tmp, "w") as handle:
            json.dump(record, handle, indent=2, default=str)
        os.replace(tmp, path)
        return path


_SCHEMA = """
CREATE TABLE IF NOT EXISTS vision_notes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    asset_id TEXT NOT NULL,
    ts REAL NOT NULL,
    provider TEXT, model TEXT,
    description TEXT,
    tags TEXT NOT NULL,            -- JSON list
    details TEXT NOT NULL,         -- JSON: shot type, subjects, mood, per-frame notes, frames analysed
    cost_usd REAL
);
CREATE INDEX IF NOT EXISTS vision_notes_asset ON vision_notes(asset_id);
"""


class SqliteSink:
    """Every analysis, history kept: `vibeboard-vision.sqlite` next to the output folder."""

    def __init__(self, path: str = ""):
        self.path = path or os.environ.get("VIBEBOARD_VISION_DB") or os.path.join(default_state_dir(),
                                                                                  "vibeboard-vision.sqlite")

    def write(self, record: dict) -> str:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.executescript(_SCHEMA)
            details = {k: v for k, v in record.items() if k not in ("asset_id", "description", "tags",
                                                                     "provider", "model", "cost_usd")}
            cur = db.execute("INSERT INTO vision_notes (asset_id, ts, provider, model, description, tags, details,"
                             " cost_usd) VALUES (?,?,?,?,?,?,?,?)",
                             (record["asset_id"], time.time(), record.get("provider"), record.get("model"),
                              record.get("description"), json.dumps(record.get("tags", [])),
                              json.dumps(details, default=str), record.get("cost_usd")))
            return f"{self.path}#{cur.lastrowid}"
        finally:
            db.close()


def notes_for(asset_id: str, path: str = "") -> List[dict]:
    """Stored analyses of one asset, newest first (what Dailies or the asset browser shows)."""
    sink = SqliteSink(path)
    if not os.path.exists(sink.path):
        return []
    db = sqlite3.connect(sink.path)
    db.row_factory = sqlite3.Row
    try:
        rows = db.execute("SELECT * FROM vision_notes WHERE asset_id = ? ORDER BY id DESC", (asset_id,)).fetchall()
    finally:
        db.close()
    return [{**dict(r), "tags": json.loads(r["tags"]), "details": json.loads(r["details"])} for r in rows]


class DailiesSink:
    """A machine note on a Dailies version (author grok-vision), next to the QC notes, over the whole clip."""

    def write(self, record: dict) -> str:
        from ..dailies.nodes import open_store  # Dailies is another module: only when this sink is used
        project = record.get("dailies_project") or ""
        store = open_store("Dailies sink", project)
        version = store.version(record["asset_id"])  # DailiesError (a ValueError) when there is no such version
        text = (f"{record.get('provider', '')} {record.get('model', '')}: {record.get('description', '')} "
                f"Tags: {', '.join(record.get('tags', []))}")
        last = max(0, (version.get("frames") or 1) - 1)
        note = store.add_note(version["id"], text.strip(), 0, last, author="grok-vision", kind="machine")
        return f"dailies:{project}/{version['id']}#note{note['id']}"


_FACTORIES: Dict[str, Callable[[], AnalysisSink]] = {"json": JsonSink, "sqlite": SqliteSink, "dailies": DailiesSink}


def register_sink(name: str, factory: Callable[[], AnalysisSink]) -> None:
    _FACTORIES[name] = factory


def write_all(record: dict, names: str = "") -> Dict[str, str]:
    """Write a record to each named sink (default: VIBEBOARD_VISION_SINKS or json,sqlite)."""
    wanted = [n.strip() for n in (names or os.environ.get("VIBEBOARD_VISION_SINKS") or "json,sqlite").split(",")
              if n.strip()]
    unknown = [n for n in wanted if n not in _FACTORIES]
    if unknown:
        raise KeyError(f"unknown analysis sink(s) {unknown}; registered: {sorted(_FACTORIES)}")
    return {name: _FACTORIES[name]().write(record) for name in wanted}
