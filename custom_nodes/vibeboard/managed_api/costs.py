"""What a managed-API call costs (a price table kept as data) and the ledger every call is written to.

The ledger is one SQLite file (WAL, like the job store) so `vibeboard cost` can compare "on the API" with
"on the pod" per image, per clip and per run. A call is recorded whatever its end — ok, failed, cancelled,
timeout, download_failed — so a paid result whose download broke can be fetched again instead of re-bought.
"""
from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Optional

_PACK_PRICES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "prices.json")


# --- price table ---------------------------------------------------------------------------------

def load_prices(path: Optional[str] = None) -> dict:
    """The pack's table, with the entries of VIBEBOARD_PRICES (JSON or YAML, same shape) laid over it."""
    with open(_PACK_PRICES) as handle:
        table = json.load(handle)
    override = path or os.environ.get("VIBEBOARD_PRICES")
    if override:
        with open(override) as handle:
            text = handle.read()
        if override.endswith((".yaml", ".yml")):
            import yaml  # PyYAML: only for YAML overrides
            extra = yaml.safe_load(text) or {}
        else:
            extra = json.loads(text)
        for section in ("models", "pod"):
            table.setdefault(section, {}).update(extra.get(section) or {})
    return table


@dataclass
class Price:
    cost: Optional[float]   # None: the table has no price for this model
    unit: str
    quantity: float
    unit_price: Optional[float]
    checked: str = ""
    note: str = ""


def _megapixels(width: int, height: int) -> int:
    # fal bills a 1024x1024 image as one megapixel: 2**20 pixels, rounded up per image
    return max(1, math.ceil(width * height / 2 ** 20))


def price_call(model: str, usage: dict, table: Optional[dict] = None) -> Price:
    """Cost of one call from what it produced. `usage` keys: sizes [(w, h), ...] for images; seconds,
    resolution, duration, audio for clips; input_tokens, output_tokens for analysis."""
    table = table or load_prices()
    entry = table.get("models", {}).get(model)
    if entry is None:
        return Price(None, "", 0.0, None, note=f"no price for '{model}' in the price table")
    unit, checked = entry.get("unit", ""), entry.get("checked", "")
    if unit == "megapixel":
        mps = sum(_megapixels(w, h) for w, h in usage.get("sizes") or [])
        return Price(round(mps * entry["price"], 6), unit, mps, entry["price"], checked)
    if unit == "image":
        count = len(usage.get("sizes") or []) or int(usage.get("images", 0))
        return Price(round(count * entry["price"], 6), unit, count, entry["price"], checked)
    if unit == "second":
        seconds = float(usage.get("seconds") or 0.0)
        rate = entry["price"]
        if usage.get("audio") is False and "price_without_audio" in entry:
            rate = entry["price_without_audio"]
        return Price(round(seconds * rate, 6), unit, seconds, rate, checked)
    if unit == "clip_plus_second":
        seconds = float(usage.get("seconds") or entry["base_seconds"])
        extra = max(0.0, math.ceil(seconds - entry["base_seconds"] - 1e-6))
        cost = entry["base_price"] + extra * entry["per_extra_second"]
        return Price(round(cost, 6), unit, seconds, entry["base_price"], checked,
                     note=f"{entry['base_seconds']} s base + {extra:g} extra s")
    if unit == "clip":
        factor = 1.0
        for key, table_of in (entry.get("multipliers") or {}).items():
            value = usage.get(key)
            if value is not None and str(value) in table_of:
                factor *= table_of[str(value)]
        return Price(round(entry["price"] * factor, 6), unit, 1.0, entry["price"], checked,
                     note=f"x{factor:g} for " + ", ".join(f"{k}={usage.get(k)}" for k in entry.get("multipliers", {})))
    if unit == "million_tokens":
        tokens_in, tokens_out = int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)
        cost = tokens_in / 1e6 * entry["input"] + tokens_out / 1e6 * entry["output"]
        return Price(round(cost, 8), unit, tokens_in + tokens_out, None, checked,
                     note=f"{tokens_in} in + {tokens_out} out tokens")
    return Price(None, unit, 0.0, None, checked, note=f"unknown unit '{unit}' in the price table")


def pod_rate(gpu: str, table: Optional[dict] = None) -> float:
    table = table or load_prices()
    entry = table.get("pod", {}).get(gpu)
    if entry is None:
        raise KeyError(f"no pod rate for '{gpu}'; known: {', '.join(sorted(table.get('pod', {})))}")
    return float(entry["usd_per_hour"])


# --- ledger --------------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    run_id TEXT,
    node TEXT,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    kind TEXT NOT NULL,            -- image | clip | analysis
    status TEXT NOT NULL,          -- ok | failed | cancelled | timeout | download_failed
    unit TEXT,
    quantity REAL,
    unit_price REAL,
    cost_usd REAL,                 -- NULL when the table has no price
    price_checked TEXT,
    seconds REAL,                  -- wall time of the call
    request_id TEXT,
    args_hash TEXT,
    outputs TEXT NOT NULL DEFAULT '[]',
    result TEXT,                   -- provider result (URLs) kept for re-downloading a paid result
    fallback INTEGER NOT NULL DEFAULT 0,
    note TEXT
);
CREATE INDEX IF NOT EXISTS api_calls_run ON api_calls(run_id);
CREATE INDEX IF NOT EXISTS api_calls_args ON api_calls(args_hash, status);
"""

# The render farm's GPU time (vibeboard_runner/farm): one row per executed node, plus one 'storage' row per job.
_GPU_SCHEMA = """
CREATE TABLE IF NOT EXISTS gpu_usage (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    job_id TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'node',   -- node | storage
    node TEXT,
    class_type TEXT,
    worker TEXT,
    gpu_class TEXT,
    seconds REAL NOT NULL DEFAULT 0,     -- GPU-seconds of the node
    usd_per_hour REAL,
    cost_usd REAL,                       -- NULL when the GPU class has no price
    storage_bytes INTEGER NOT NULL DEFAULT 0,
    workflow TEXT,
    model TEXT,
    user TEXT,
    status TEXT,
    attempt INTEGER
);
CREATE INDEX IF NOT EXISTS gpu_usage_job ON gpu_usage(job_id);
CREATE INDEX IF NOT EXISTS gpu_usage_ts ON gpu_usage(ts);
"""


def default_ledger_path() -> str:
    env = os.environ.get("VIBEBOARD_COST_DB")
    if env:
        return env
    from ..common import runtime
    return os.path.join(os.path.dirname(runtime.output_directory()), "vibeboard-costs.sqlite")


class Ledger:
    _locks: dict = {}

    def __init__(self, path: Optional[str] = None):
        self.path = path or default_ledger_path()
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self._lock = Ledger._locks.setdefault(os.path.abspath(self.path), threading.Lock())
        with self._connect() as db:
            db.executescript(_SCHEMA)
            db.executescript(_GPU_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        return db

    def record(self, *, provider: str, model: str, kind: str, status: str, price: Optional[Price] = None,
               run_id: str = "", node: str = "", seconds: float = 0.0, request_id: Optional[str] = None,
               args_hash: str = "", outputs=(), result=None, fallback: bool = False, note: str = "") -> int:
        charged = price is not None and status in ("ok", "download_failed")
        row = (time.time(), run_id, node, provider, model, kind, status,
               price.unit if price else None, price.quantity if price else None,
               price.unit_price if price else None,
               (price.cost if charged else 0.0) if price else None,
               price.checked if price else None, round(seconds, 3), request_id, args_hash,
               json.dumps(list(outputs)), json.dumps(result) if result is not None else None, int(fallback),
               note or (price.note if price else ""))
        with self._lock, self._connect() as db:
            cur = db.execute(
                "INSERT INTO api_calls (ts, run_id, node, provider, model, kind, status, unit, quantity, unit_price,"
                " cost_usd, price_checked, seconds, request_id, args_hash, outputs, result, fallback, note)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", row)
            return int(cur.lastrowid)

    def update(self, row_id: int, **fields) -> None:
        if "outputs" in fields:
            fields["outputs"] = json.dumps(list(fields["outputs"]))
        if "result" in fields:
            fields["result"] = json.dumps(fields["result"])
        names = ", ".join(f"{k} = ?" for k in fields)
        with self._lock, self._connect() as db:
            db.execute(f"UPDATE api_calls SET {names} WHERE id = ?", (*fields.values(), row_id))

    def unfinished_download(self, model: str, args_hash: str) -> Optional[sqlite3.Row]:
        """A paid result of the same request whose download failed: fetch it again instead of re-buying."""
        with self._connect() as db:
            return db.execute("SELECT * FROM api_calls WHERE model = ? AND args_hash = ? AND status = "
                              "'download_failed' ORDER BY id DESC LIMIT 1", (model, args_hash)).fetchone()

    def rows(self, run_id: Optional[str] = None) -> list:
        with self._connect() as db:
            if run_id:
                return db.execute("SELECT * FROM api_calls WHERE run_id = ? ORDER BY id", (run_id,)).fetchall()
            return db.execute("SELECT * FROM api_calls ORDER BY id").fetchall()

    def record_gpu(self, rows: list) -> None:
        """GPU usage rows (dicts with the gpu_usage columns) of one farm job, in one transaction."""
        columns = ("ts", "job_id", "kind", "node", "class_type", "worker", "gpu_class", "seconds", "usd_per_hour",
                   "cost_usd", "storage_bytes", "workflow", "model", "user", "status", "attempt")
        defaults = {"kind": "node", "seconds": 0.0, "storage_bytes": 0}
        values = [tuple(row.get(c) if row.get(c) is not None else defaults.get(c, time.time() if c == "ts" else None)
                        for c in columns) for row in rows]
        with self._lock, self._connect() as db:
            db.executemany(f"INSERT INTO gpu_usage ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                           values)

    def gpu_rows(self, since: Optional[float] = None, job_id: Optional[str] = None) -> list:
        query, params = "SELECT * FROM gpu_usage WHERE ts >= ?", [since or 0.0]
        if job_id:
            query += " AND job_id = ?"
            params.append(job_id)
        with self._connect() as db:
            return db.execute(query + " ORDER BY id", params).fetchall()


GPU_CLASS_ALIASES = {"h200": "runpod-h200", "a100": "runpod-a100-80gb", "a100-80gb": "runpod-a100-80gb",
                     "4090": "runpod-rtx4090", "rtx4090": "runpod-rtx4090", "a6000": "runpod-a6000",
                     "rtx-a6000": "runpod-a6000"}


def gpu_class_rate(gpu_class: str, table: Optional[dict] = None) -> Optional[float]:
    """$/h of a farm GPU class: the price table's pod entry of that name (or its runpod- alias); None if unknown."""
    pods = (table or load_prices()).get("pod", {})
    for key in (gpu_class, GPU_CLASS_ALIASES.get(str(gpu_class).lower(), ""), f"runpod-{gpu_class}"):
        if key in pods:
            return float(pods[key]["usd_per_hour"])
    return None
