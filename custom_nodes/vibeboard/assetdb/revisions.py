"""Diff-aware re-import: a revised script re-tags only the scenes whose text changed and keeps user edits.

Scenes are matched to the previous revision by the hash of their text (unchanged, possibly moved) and then by
heading (changed). An unchanged scene takes its previous tags as they are (user renames, rejections, accepted
LLM tags), shifted to its new offsets. A changed scene gets the new parser tags; the user's own tags and
renames come along when their evidence text is still in the scene.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict

_TAG_COLS = ("category", "label", "start", "end", "source", "status", "implied", "note", "user_edited",
             "original_label")


def import_breakdown(db, bd, source_path: str, source_format: str, parser: str, title) -> dict:
    title = title or bd.title.get("Title") or os.path.splitext(os.path.basename(source_path or "script"))[0]
    with db._tx() as c:
        row = c.execute("SELECT id FROM scripts WHERE title = ?", (title,)).fetchone()
        script_id = row[0] if row else c.execute("INSERT INTO scripts (title, created) VALUES (?, ?)",
                                                 (title, time.time())).lastrowid
        prev = c.execute("SELECT * FROM revisions WHERE script_id = ? ORDER BY number DESC LIMIT 1",
                         (script_id,)).fetchone()
        number = (prev["number"] + 1) if prev else 1
        rid = c.execute("INSERT INTO revisions (script_id, number, created, source_path, source_format, parser, text,"
                        " title_json, page_count, elements_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (script_id, number, time.time(), source_path, source_format, parser, bd.text,
                         json.dumps(bd.title), bd.page_count, json.dumps(getattr(bd, "elements", [])))).lastrowid
        prev_scenes = [dict(r) for r in c.execute("SELECT * FROM scenes WHERE revision_id = ? ORDER BY idx",
                                                  (prev["id"],))] if prev else []
        prev_text = prev["text"] if prev else ""
        unused = {s["id"]: s for s in prev_scenes}
        changes = {"unchanged": [], "changed": [], "added": [], "removed": [], "tags": {}}
        for scene in bd.scenes:
            match = next((s for s in unused.values() if s["fingerprint"] == scene.fingerprint), None)
            kind = "unchanged" if match else None
            if match is None:
                match = next((s for s in unused.values() if s["heading"] == scene.heading), None)
                kind = "changed" if match else "added"
            if match is not None:
                unused.pop(match["id"])
            sid = c.execute(
                "INSERT INTO scenes (revision_id, idx, number, heading, int_ext, set_name, time_of_day, day_night,"
                " eighths, page, script_day, synopsis, start, \"end\", fingerprint, retagged) VALUES"
                " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (rid, scene.index, scene.number, scene.heading, scene.int_ext, scene.set_name, scene.time_of_day,
                 scene.day_night, scene.eighths, scene.page, scene.script_day, scene.synopsis, scene.start,
                 scene.end, scene.fingerprint, int(kind != "unchanged"))).lastrowid
            changes[kind].append(scene.number)
            if kind == "unchanged":
                for t in c.execute("SELECT * FROM tags WHERE scene_id = ?", (match["id"],)).fetchall():
                    _insert(c, rid, sid, dict(t), shift=scene.start - match["start"])
                continue
            new_tags = [asdict(t) for t in bd.tags if t.scene == scene.index]
            if match is not None:
                _carry_user_edits(c, match, prev_text, new_tags, bd.text, scene)
                before = {(r[0], r[1]) for r in c.execute("SELECT category, label FROM tags WHERE scene_id = ? AND "
                                                          "status = 'accepted'", (match["id"],))}
                after = {(t["category"], t["label"]) for t in new_tags if t["status"] == "accepted"}
                changes["tags"][scene.number] = {"added": sorted(f"{k}: {v}" for k, v in after - before),
                                                 "removed": sorted(f"{k}: {v}" for k, v in before - after)}
            for t in new_tags:
                _insert(c, rid, sid, t)
        changes["removed"] = [s["number"] for s in unused.values()]
        c.execute("UPDATE revisions SET changes_json = ? WHERE id = ?", (json.dumps(changes), rid))
        old_status = {}
        if prev:
            old_status = {(r["canonical"], r["alias"]): r["status"] for r in
                          c.execute("SELECT * FROM alias_proposals WHERE revision_id = ?", (prev["id"],))}
        for a in bd.aliases:
            c.execute("INSERT INTO alias_proposals (revision_id, canonical, alias, reason, evidence_json, status)"
                      " VALUES (?, ?, ?, ?, ?, ?)", (rid, a.canonical, a.alias, a.reason, json.dumps(a.evidence),
                                                     old_status.get((a.canonical, a.alias), a.status)))
        _upsert_assets(c, script_id, rid)
    return {"revision_id": rid, "number": number, "changes": changes}


def _insert(c, rid: int, sid: int, t: dict, shift: int = 0) -> None:
    vals = {k: t.get(k, d) for k, d in zip(_TAG_COLS, (None, None, 0, 0, "parser", "accepted", 0, "", 0, ""))}
    vals["start"] += shift
    vals["end"] += shift
    vals["implied"] = int(bool(vals["implied"]))
    c.execute("INSERT INTO tags (revision_id, scene_id, category, label, start, \"end\", source, status, implied,"
              " note, user_edited, original_label) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
              (rid, sid, *[vals[k] for k in _TAG_COLS]))


def _carry_user_edits(c, old_scene: dict, old_text: str, new_tags: list, new_text: str, scene) -> None:
    """User tags/renames/rejections of a changed scene survive when their evidence is still in the scene."""
    body = new_text[scene.start:scene.end]
    for t in c.execute("SELECT * FROM tags WHERE scene_id = ? AND (user_edited = 1 OR source = 'user')",
                       (old_scene["id"],)).fetchall():
        evidence = old_text[t["start"]:t["end"]]
        same = next((n for n in new_tags if n["category"] == t["category"]
                     and n["label"] == (t["original_label"] or t["label"])), None)
        if same is not None and t["source"] != "user":
            same.update(label=t["label"], status=t["status"], user_edited=1, original_label=t["original_label"])
            continue
        pos = body.find(evidence) if evidence else -1
        if pos >= 0:
            new_tags.append(dict(dict(t), start=scene.start + pos, end=scene.start + pos + len(evidence)))


def _upsert_assets(c, script_id: int, rid: int) -> None:
    for (label,) in c.execute("SELECT DISTINCT label FROM tags WHERE revision_id = ? AND category = 'cast'", (rid,)):
        c.execute("INSERT OR IGNORE INTO characters (script_id, name) VALUES (?, ?)", (script_id, label))
    for (name,) in c.execute("SELECT DISTINCT set_name FROM scenes WHERE revision_id = ?", (rid,)):
        c.execute("INSERT OR IGNORE INTO locations (script_id, name) VALUES (?, ?)", (script_id, name or ""))
    for cat, label in c.execute("SELECT DISTINCT category, label FROM tags WHERE revision_id = ? AND category NOT IN"
                                " ('cast', 'location')", (rid,)).fetchall():
        c.execute("INSERT OR IGNORE INTO elements (script_id, category, label) VALUES (?, ?, ?)",
                  (script_id, cat, label))
