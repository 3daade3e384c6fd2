"""Asset database (SQLite): props/sets/materials with their GLB, maps, thumbnails, tags, physical scale and
licence; a motion library (camera paths, blocking moves, imported motion such as CARI4D output).

Assets link to Script Lab's breakdown elements through `element_ref` (an opaque string such as
"scriptlab:element:42"). Script Lab's own database is built separately; it plugs in through the small
`ElementSource` adapter below, so nothing here imports it. File paths are stored relative to the asset root
and resolved with `safe_join`, so a row (file content) can never point outside it.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from typing import Iterable, Optional, Protocol

from ..media.files import safe_join
from .licences import ORDER, most_restrictive

SCHEMA = """
CREATE TABLE IF NOT EXISTS assets (
  id TEXT PRIMARY KEY, name TEXT NOT NULL, kind TEXT NOT NULL, element_ref TEXT,
  glb TEXT, maps TEXT NOT NULL DEFAULT '{}', thumbnails TEXT NOT NULL DEFAULT '[]', tags TEXT NOT NULL DEFAULT '[]',
  scale_m REAL, models TEXT NOT NULL DEFAULT '[]', parents TEXT NOT NULL DEFAULT '[]',
  licence_class TEXT NOT NULL, licence_notes TEXT NOT NULL DEFAULT '[]', created REAL NOT NULL);
CREATE INDEX IF NOT EXISTS assets_element ON assets(element_ref);
CREATE TABLE IF NOT EXISTS motions (
  id TEXT PRIMARY KEY, name TEXT NOT NULL, kind TEXT NOT NULL, data TEXT NOT NULL, element_ref TEXT,
  models TEXT NOT NULL DEFAULT '[]', licence_class TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""
ASSET_KINDS = ("prop", "set", "character", "material", "scene")
MOTION_KINDS = ("camera_path", "blocking_move", "imported")


class LicenceError(RuntimeError):
    """A commercial export met assets whose licence forbids it; `.assets` lists them."""

    def __init__(self, assets: list):
        self.assets = assets
        lines = "; ".join(f"{a['name']} ({a['id']}): {a['licence_class']}" for a in assets)
        super().__init__(f"commercial export stopped: {len(assets)} asset(s) are not licensed for commercial "
                         f"use: {lines}")


class ElementSource(Protocol):
    """What Script Lab's asset database provides to link against (the adapter's whole surface)."""

    def element(self, ref: str) -> Optional[dict]: ...  # {"ref", "kind", "name", ...} or None


class NoElements:
    """Default adapter: refs are kept as given, nothing is resolved."""

    def element(self, ref: str) -> Optional[dict]:
        return None


class ScriptLabElements:
    """The adapter for Script Lab's project database (`vibeboard.assetdb`, a `.vbdb` file): element refs
    `scriptlab:<category>/<label>` (e.g. `scriptlab:props/COMPASS`) resolve to that breakdown element with the
    scenes it appears in. Script Lab's module is imported only when a ref is resolved."""
    PREFIX = "scriptlab:"

    def __init__(self, vbdb_path: str):
        self.path = vbdb_path

    @classmethod
    def ref(cls, category: str, label: str) -> str:
        return f"{cls.PREFIX}{category}/{label}"

    def _elements(self, category: Optional[str] = None) -> list:
        from ..assetdb import AssetDB as ScriptLabDB  # Script Lab's project database

        with ScriptLabDB(self.path) as db:
            return db.elements(category=category)

    def element(self, ref: str) -> Optional[dict]:
        if not ref or not ref.startswith(self.PREFIX) or "/" not in ref:
            return None
        category, _, label = ref[len(self.PREFIX):].partition("/")
        for e in self._elements(category):
            if e["label"] == label:
                return {"ref": ref, "kind": category, "name": label, "scenes": list(e["scenes"])}
        return None

    def missing_assets(self, db: "AssetDB", category: str = "props") -> list:
        """Refs of the breakdown's elements that have no asset yet (what the Asset Bin still has to make)."""
        have = {a["element_ref"] for a in db.find()}
        return [r for r in (self.ref(e["category"], e["label"]) for e in self._elements(category)) if r not in have]


class AssetDB:
    def __init__(self, path: str, asset_root: str, elements: ElementSource | None = None):
        self.path = path
        self.root = os.path.abspath(asset_root)
        os.makedirs(self.root, exist_ok=True)
        self.elements = elements or NoElements()
        self.conn = sqlite3.connect(path)
        self.conn.row_factory = sqlite3.Row
        self.conn.executescript(SCHEMA)
        self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', '1')")
        self.conn.commit()

    def close(self):
        self.conn.close()

    # --- paths -------------------------------------------------------------------------------------
    def _rel(self, path: Optional[str]) -> Optional[str]:
        if not path:
            return None
        full = os.path.realpath(path if os.path.isabs(path) else os.path.join(self.root, path))
        rel = os.path.relpath(full, os.path.realpath(self.root))
        safe_join(self.root, rel.replace(os.sep, "/"))  # raises if it leaves the root
        return rel.replace(os.sep, "/")

    def resolve(self, rel: str) -> str:
        return safe_join(self.root, rel)

    # --- assets ------------------------------------------------------------------------------------
    def add_asset(self, name: str, kind: str, *, glb: str = "", maps: dict | None = None,
                  thumbnails: Iterable[str] = (), tags: Iterable[str] = (), scale_m: float | None = None,
                  models: Iterable[str] = (), parents: Iterable[str] = (), element_ref: str | None = None) -> str:
        if kind not in ASSET_KINDS:
            raise ValueError(f"asset kind must be one of {ASSET_KINDS}; got {kind!r}")
        if not name.strip():
            raise ValueError("asset name is empty")
        parent_rows = [self.asset(p) for p in parents]
        missing = [p for p, r in zip(parents, parent_rows) if r is None]
        if missing:
            raise ValueError(f"unknown parent asset(s): {missing}")
        models = list(models)
        cls, notes = most_restrictive(models, [r["licence_class"] for r in parent_rows])
        asset_id = uuid.uuid4().hex[:12]
        self.conn.execute(
            "INSERT INTO assets VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (asset_id, name, kind, element_ref, self._rel(glb), json.dumps({k: self._rel(v) for k, v in
                                                                             (maps or {}).items()}),
             json.dumps([self._rel(t) for t in thumbnails]), json.dumps(sorted(set(tags))),
             None if scale_m is None else float(scale_m), json.dumps(models), json.dumps(list(parents)), cls,
             json.dumps(notes), time.time()))
        self.conn.commit()
        return asset_id

    def _row(self, row) -> dict:
        d = dict(row)
        for key in ("maps", "thumbnails", "tags", "models", "parents", "licence_notes"):
            d[key] = json.loads(d[key])
        link = self.elements.element(d["element_ref"]) if d.get("element_ref") else None
        d["element"] = link
        return d

    def asset(self, asset_id: str) -> Optional[dict]:
        row = self.conn.execute("SELECT * FROM assets WHERE id = ?", (asset_id,)).fetchone()
        return None if row is None else self._row(row)

    def find(self, *, tag: str | None = None, element_ref: str | None = None, kind: str | None = None) -> list:
        rows = self.conn.execute("SELECT * FROM assets ORDER BY created, id").fetchall()
        out = [self._row(r) for r in rows]
        if tag:
            out = [a for a in out if tag in a["tags"]]
        if element_ref:
            out = [a for a in out if a["element_ref"] == element_ref]
        if kind:
            out = [a for a in out if a["kind"] == kind]
        return out

    # --- motions -----------------------------------------------------------------------------------
    def add_motion(self, name: str, kind: str, data: dict, *, models: Iterable[str] = (),
                   element_ref: str | None = None) -> str:
        if kind not in MOTION_KINDS:
            raise ValueError(f"motion kind must be one of {MOTION_KINDS}; got {kind!r}")
        cls, _ = most_restrictive(list(models))
        motion_id = uuid.uuid4().hex[:12]
        self.conn.execute("INSERT INTO motions VALUES (?,?,?,?,?,?,?,?)",
                          (motion_id, name, kind, json.dumps(data), element_ref, json.dumps(list(models)), cls,
                           time.time()))
        self.conn.commit()
        return motion_id

    def motions(self, kind: str | None = None) -> list:
        rows = self.conn.execute("SELECT * FROM motions ORDER BY created, id").fetchall()
        out = [dict(r, data=json.loads(r["data"]), models=json.loads(r["models"])) for r in rows]
        return [m for m in out if kind is None or m["kind"] == kind]

    # --- export ------------------------------------------------------------------------------------
    def check_export(self, asset_ids: Iterable[str], commercial: bool) -> dict:
        """For a project export: raises LicenceError when `commercial` and any asset is non-commercial; else
        returns {"assets": [...], "warnings": [...]} (unknown / restricted licences to read before release)."""
        assets = []
        for aid in asset_ids:
            a = self.asset(aid)
            if a is None:
                raise ValueError(f"unknown asset id {aid!r}")
            assets.append(a)
        blocked = [a for a in assets if a["licence_class"] == "non-commercial"]
        if commercial and blocked:
            raise LicenceError(blocked)
        warn = [f"{a['name']}: licence {a['licence_class']} — " + "; ".join(a["licence_notes"])
                for a in assets if ORDER.index(a["licence_class"]) >= ORDER.index("restricted")]
        return {"assets": assets, "warnings": warn}
