"""VibeBoard's asset database: one SQLite file per project, the single source other modules read.

Script Lab writes it; Character Foundry (characters → actor cards), Spatia/Stagecraft (locations), Asset Bin
(props and other elements), Shot Studio/Sequencer/Dailies (scenes → shots) read it. The reading API is small:

    db = AssetDB("project.vbdb")            # opens (creates, migrates) the file
    rev = db.latest_revision()               # {"id", "number", "title", "page_count", "changes", ...} or None
    db.scenes(rev["id"])                     # [{"idx", "number", "heading", "int_ext", "set_name", "day_night",
                                             #   "eighths", "page", "script_day", "synopsis", "start", "end"}]
    db.tags(rev["id"], scene_idx=None, category=None, status="accepted")
                                             # [{"id", "scene_idx", "category", "label", "start", "end",
                                             #   "source": parser|llm|user, "status", "implied", "evidence"}]
    db.characters(), db.locations(), db.elements(category=None)   # the project's assets, with the scenes they're in
    db.shots(rev["id"])                      # shot list rows (scene number, shot number, description, workflow)
    db.script_text(rev["id"])                # the text every evidence span points into

Writing (Script Lab; a user through the UI): `import_breakdown`, `add_user_tag`, `rename_tag`, `set_tag_status`,
`set_alias_status`, `add_shot`, `record_llm_call`. Schema changes are migrations in `schema.py`.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import contextmanager
from typing import List, Optional

from .schema import MIGRATIONS

SCHEMA_VERSION = len(MIGRATIONS)


class AssetDBError(ValueError):
    pass


class AssetDB:
    def __init__(self, path: str):
        self.path = path
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        self.conn = sqlite3.connect(path, timeout=30)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA foreign_keys = ON")
        self.migrate()

    # --- schema ---------------------------------------------------------------------------------------------
    def migrate(self) -> int:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise AssetDBError(f"{self.path}: schema version {version} is newer than this VibeBoard "
                               f"({SCHEMA_VERSION}); update VibeBoard")
        for number in range(version, SCHEMA_VERSION):
            with self.conn:  # one transaction per migration
                self.conn.executescript("BEGIN;" + MIGRATIONS[number] + f";PRAGMA user_version = {number + 1};")
        return SCHEMA_VERSION

    def close(self) -> None:
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @contextmanager
    def _tx(self):
        with self.conn:
            yield self.conn

    # --- reading --------------------------------------------------------------------------------------------
    def _script_id(self, title: Optional[str]) -> Optional[int]:
        if title is None:
            row = self.conn.execute("SELECT s.id FROM scripts s JOIN revisions r ON r.script_id = s.id "
                                    "ORDER BY r.created DESC, r.id DESC LIMIT 1").fetchone()
        else:
            row = self.conn.execute("SELECT id FROM scripts WHERE title = ?", (title,)).fetchone()
        return row[0] if row else None

    def latest_revision(self, title: Optional[str] = None) -> Optional[dict]:
        sid = self._script_id(title)
        if sid is None:
            return None
        row = self.conn.execute("SELECT r.*, s.title AS script FROM revisions r JOIN scripts s ON s.id = r.script_id "
                                "WHERE script_id = ? ORDER BY number DESC LIMIT 1", (sid,)).fetchone()
        return self._revision(row)

    def revision(self, revision_id: int) -> dict:
        row = self.conn.execute("SELECT r.*, s.title AS script FROM revisions r JOIN scripts s ON s.id = r.script_id "
                                "WHERE r.id = ?", (revision_id,)).fetchone()
        if row is None:
            raise AssetDBError(f"no revision {revision_id}")
        return self._revision(row)

    @staticmethod
    def _revision(row) -> dict:
        out = {k: row[k] for k in row.keys() if k not in ("text", "title_json", "changes_json", "elements_json")}
        out["title_page"] = json.loads(row["title_json"])
        out["changes"] = json.loads(row["changes_json"])
        return out

    def _rev_id(self, revision_id: Optional[int]) -> int:
        if revision_id is not None:
            return revision_id
        rev = self.latest_revision()
        if rev is None:
            raise AssetDBError(f"{self.path}: no script imported yet")
        return rev["id"]

    def script_text(self, revision_id: Optional[int] = None) -> str:
        return self.conn.execute("SELECT text FROM revisions WHERE id = ?",
                                 (self._rev_id(revision_id),)).fetchone()[0]

    def script_elements(self, revision_id: Optional[int] = None) -> List[dict]:
        """The typed elements of the script text (kind, text, name, extension, dual, start, end)."""
        return json.loads(self.conn.execute("SELECT elements_json FROM revisions WHERE id = ?",
                                            (self._rev_id(revision_id),)).fetchone()[0])

    def scenes(self, revision_id: Optional[int] = None) -> List[dict]:
        rows = self.conn.execute("SELECT * FROM scenes WHERE revision_id = ? ORDER BY idx",
                                 (self._rev_id(revision_id),)).fetchall()
        return [dict(r) for r in rows]

    def tags(self, revision_id: Optional[int] = None, scene_idx: Optional[int] = None,
             category: Optional[str] = None, status: Optional[str] = "accepted") -> List[dict]:
        rid = self._rev_id(revision_id)
        sql = ("SELECT t.*, s.idx AS scene_idx, s.number AS scene_number FROM tags t "
               "JOIN scenes s ON s.id = t.scene_id WHERE t.revision_id = ?")
        args: list = [rid]
        for col, val in (("s.idx", scene_idx), ("t.category", category), ("t.status", status)):
            if val is not None:
                sql += f" AND {col} = ?"
                args.append(val)
        text = self.script_text(rid)
        out = []
        for r in self.conn.execute(sql + " ORDER BY s.idx, t.start", args).fetchall():
            d = dict(r)
            d["implied"] = bool(d["implied"])
            d["evidence"] = text[d["start"]:d["end"]]
            out.append(d)
        return out

    def characters(self, revision_id: Optional[int] = None) -> List[dict]:
        """Cast (merged aliases resolved): name, aliases, scenes, speaking scenes."""
        rid = self._rev_id(revision_id)
        sid = self.revision(rid)["script_id"]
        rows = self.conn.execute("SELECT c.id, c.name, a.name AS alias_of FROM characters c "
                                 "LEFT JOIN characters a ON a.id = c.alias_of WHERE c.script_id = ?", (sid,)).fetchall()
        canonical = {r["name"]: (r["alias_of"] or r["name"]) for r in rows}
        cues = self.conn.execute("SELECT s.idx, t.label FROM tags t JOIN scenes s ON s.id = t.scene_id "
                                 "WHERE t.revision_id = ? AND t.category = 'cast' AND t.note = 'speaking' "
                                 "AND t.status = 'accepted'", (rid,)).fetchall()
        speaking = {(r[0], canonical.get(r[1], r[1])) for r in cues}
        out: dict = {}
        for t in self.tags(rid, category="cast"):
            name = canonical.get(t["label"], t["label"])
            entry = out.setdefault(name, {"name": name, "aliases": [], "scenes": [], "speaking_scenes": []})
            if t["label"] != name and t["label"] not in entry["aliases"]:
                entry["aliases"].append(t["label"])
            if t["scene_number"] not in entry["scenes"]:
                entry["scenes"].append(t["scene_number"])
            if (t["scene_idx"], name) in speaking and t["scene_number"] not in entry["speaking_scenes"]:
                entry["speaking_scenes"].append(t["scene_number"])
        for entry in out.values():
            entry["speaking"] = bool(entry["speaking_scenes"])
        return sorted(out.values(), key=lambda e: e["name"])

    def locations(self, revision_id: Optional[int] = None) -> List[dict]:
        out: dict = {}
        for s in self.scenes(revision_id):
            entry = out.setdefault(s["set_name"], {"name": s["set_name"], "int_ext": set(), "scenes": []})
            entry["int_ext"].add(s["int_ext"] or "")
            entry["scenes"].append(s["number"])
        return [dict(v, int_ext=sorted(v["int_ext"])) for k, v in sorted(out.items())]

    def elements(self, category: Optional[str] = None, revision_id: Optional[int] = None) -> List[dict]:
        """Non-cast, non-location elements (props → Asset Bin, wardrobe, vehicles, animals …) with scenes."""
        out: dict = {}
        for t in self.tags(revision_id, category=category):
            if t["category"] in ("cast", "location", "script_day", "synopsis"):
                continue  # people, places and scene facts are not assets
            entry = out.setdefault((t["category"], t["label"]), {"category": t["category"], "label": t["label"],
                                                                 "scenes": []})
            if t["scene_number"] not in entry["scenes"]:
                entry["scenes"].append(t["scene_number"])
        return sorted(out.values(), key=lambda e: (e["category"], e["label"]))

    def alias_proposals(self, revision_id: Optional[int] = None) -> List[dict]:
        rows = self.conn.execute("SELECT * FROM alias_proposals WHERE revision_id = ? ORDER BY id",
                                 (self._rev_id(revision_id),)).fetchall()
        return [dict(r, evidence=json.loads(r["evidence_json"])) for r in rows]

    def shots(self, revision_id: Optional[int] = None) -> List[dict]:
        rows = self.conn.execute("SELECT sh.*, s.number AS scene_number, s.idx AS scene_idx FROM shots sh "
                                 "JOIN scenes s ON s.id = sh.scene_id WHERE s.revision_id = ? ORDER BY s.idx, sh.id",
                                 (self._rev_id(revision_id),)).fetchall()
        return [dict(r, params=json.loads(r["params_json"])) for r in rows]

    def llm_calls(self) -> List[dict]:
        return [dict(r) for r in self.conn.execute("SELECT * FROM llm_calls ORDER BY id").fetchall()]

    # --- writing --------------------------------------------------------------------------------------------
    def import_breakdown(self, breakdown, source_path: str = "", source_format: str = "", parser: str = "",
                         title: Optional[str] = None) -> dict:
        """Store a breakdown as a new revision. Scenes whose text is unchanged since the last revision keep
        all their tags (user edits, accepted LLM tags) instead of the new parser tags; changed and new scenes
        get the new tags, plus the user's own tags whose evidence text is still in the scene. Returns
        {"revision_id", "number", "changes": {"unchanged", "changed", "added", "removed", "tags"}}."""
        from . import revisions
        return revisions.import_breakdown(self, breakdown, source_path, source_format, parser, title)

    def add_user_tag(self, scene_idx: int, category: str, label: str, start: int, end: int,
                     revision_id: Optional[int] = None) -> int:
        rid = self._rev_id(revision_id)
        scene = self.conn.execute("SELECT id, start, \"end\" FROM scenes WHERE revision_id = ? AND idx = ?",
                                  (rid, scene_idx)).fetchone()
        if scene is None:
            raise AssetDBError(f"no scene index {scene_idx} in revision {rid}")
        if not (scene["start"] <= start < end <= scene["end"]):
            raise AssetDBError(f"span {start}:{end} is not inside scene {scene_idx} ({scene['start']}:{scene['end']})")
        with self._tx() as c:
            cur = c.execute("INSERT INTO tags (revision_id, scene_id, category, label, start, \"end\", source, status,"
                            " user_edited) VALUES (?, ?, ?, ?, ?, ?, 'user', 'accepted', 1)",
                            (rid, scene["id"], category, label, start, end))
            return cur.lastrowid

    def rename_tag(self, tag_id: int, label: str) -> None:
        with self._tx() as c:
            c.execute("UPDATE tags SET original_label = CASE WHEN original_label = '' THEN label ELSE original_label "
                      "END, label = ?, user_edited = 1 WHERE id = ?", (label, tag_id))

    def set_tag_status(self, tag_id: int, status: str) -> None:
        if status not in ("accepted", "proposed", "rejected"):
            raise AssetDBError(f"tag status must be accepted, proposed or rejected, not {status!r}")
        with self._tx() as c:
            c.execute("UPDATE tags SET status = ?, user_edited = 1 WHERE id = ?", (status, tag_id))

    def set_alias_status(self, proposal_id: int, status: str) -> None:
        """Accepting a proposal merges the alias into the canonical character for every reader."""
        row = self.conn.execute("SELECT p.*, r.script_id FROM alias_proposals p JOIN revisions r "
                                "ON r.id = p.revision_id WHERE p.id = ?", (proposal_id,)).fetchone()
        if row is None:
            raise AssetDBError(f"no alias proposal {proposal_id}")
        with self._tx() as c:
            c.execute("UPDATE alias_proposals SET status = ? WHERE id = ?", (status, proposal_id))
            if status == "accepted":
                canon = _upsert(c, "characters", row["script_id"], name=row["canonical"])
                alias = _upsert(c, "characters", row["script_id"], name=row["alias"])
                c.execute("UPDATE characters SET alias_of = ? WHERE id = ?", (canon, alias))

    def add_shot(self, scene_idx: int, number: str, description: str, workflow: str = "", params=None,
                 revision_id: Optional[int] = None) -> int:
        rid = self._rev_id(revision_id)
        scene = self.conn.execute("SELECT id FROM scenes WHERE revision_id = ? AND idx = ?", (rid, scene_idx)).fetchone()
        if scene is None:
            raise AssetDBError(f"no scene index {scene_idx}")
        with self._tx() as c:
            return c.execute("INSERT INTO shots (scene_id, number, description, workflow, params_json) "
                             "VALUES (?, ?, ?, ?, ?)", (scene["id"], number, description, workflow,
                                                        json.dumps(params or {}))).lastrowid

    def record_llm_call(self, task: str, provider: str, model: str, usage: dict, ok: bool, error: str = "") -> None:
        with self._tx() as c:
            c.execute("INSERT INTO llm_calls (created, task, provider, model, input_tokens, output_tokens, cost_usd,"
                      " ok, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      (time.time(), task, provider, model, int(usage.get("input_tokens", 0)),
                       int(usage.get("output_tokens", 0)), float(usage.get("cost_usd", 0.0)), int(ok), error))


def _upsert(c, table: str, script_id: int, **cols) -> int:
    keys = list(cols)
    where = " AND ".join(f"{k} = ?" for k in keys)
    row = c.execute(f"SELECT id FROM {table} WHERE script_id = ? AND {where}", (script_id, *cols.values())).fetchone()
    if row:
        return row[0]
    return c.execute(f"INSERT INTO {table} (script_id, {', '.join(keys)}) VALUES (?, {', '.join('?' * len(keys))})",
                     (script_id, *cols.values())).lastrowid
