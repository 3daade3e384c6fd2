"""Script Lab end to end: file → parsed screenplay → breakdown (rules, then optional LLM proposals) → asset DB.

Used by the nodes, the CLI (`vibeboard script breakdown`) and tests; no ComfyUI import.
"""
from __future__ import annotations

import os
from typing import Optional

from . import breakdown as breakdown_mod
from . import importers

SAMPLES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "samples")
SAMPLE_SCRIPT = "the_lighthouse_keeper.fountain"


def sample_path(name: str = SAMPLE_SCRIPT) -> Optional[str]:
    """A screenplay shipped with the pack (so the Script Lab workflow runs on a fresh clone)."""
    path = os.path.join(SAMPLES_DIR, os.path.basename(name))
    return path if os.path.isfile(path) else None


def run_breakdown(script_path: str, db_path: str, parser: str = "fountain-py", llm=None, title=None) -> dict:
    """Import a script into the asset DB at db_path; with `llm` (a vibeboard.llm provider) also store LLM
    proposals. Returns {"revision_id", "number", "changes", "breakdown", "screenplay", "llm": {...}}."""
    from ..assetdb import AssetDB
    play = importers.load_script(script_path, parser=parser)
    bd = breakdown_mod.build_breakdown(play)
    llm_report = {"used": False}
    with AssetDB(db_path) as db:
        if llm is not None:
            from . import llm_breakdown
            llm_report = llm_breakdown.propose(bd, play, llm, db=db, skip_fingerprints=unchanged_fingerprints(
                db, title or bd.title.get("Title")))
        result = db.import_breakdown(bd, source_path=script_path, source_format=play.source_format,
                                     parser=play.parser, title=title)
    return dict(result, breakdown=bd, screenplay=play, llm=llm_report)


def unchanged_fingerprints(db, title) -> set:
    """Fingerprints of the scenes of the script's latest revision (those scenes need no new LLM pass)."""
    rev = db.latest_revision(title) if title else None
    return {s["fingerprint"] for s in db.scenes(rev["id"])} if rev else set()


def summary(db, revision_id: Optional[int] = None) -> str:
    """The breakdown as a few readable lines: scenes, cast, elements."""
    from . import paginate
    rev = db.revision(revision_id) if revision_id else db.latest_revision()
    rid = rev["id"]
    lines = [f"{rev['script']} — revision {rev['number']}, {rev['page_count']} page(s)"]
    changes = rev["changes"]
    if rev["number"] > 1:
        lines.append("changes: " + ", ".join(f"{k} {v}" for k, v in changes.items() if v and k != "tags"))
        for number, diff in changes.get("tags", {}).items():
            if diff["added"] or diff["removed"]:
                lines.append(f"  scene {number}: + {', '.join(diff['added']) or '-'}   − "
                             f"{', '.join(diff['removed']) or '-'}")
    lines.append("")
    lines.append("SCENES")
    for s in db.scenes(rid):
        lines.append(f"  {s['number']:>4}  {s['int_ext'] or '-':7} {s['set_name']:<32} {s['day_night'] or '-':2} "
                     f"{paginate.format_eighths(s['eighths']):>6}  day {s['script_day']}  p{s['page']}")
    lines.append("CAST")
    for c in db.characters(rid):
        role = "speaking" if c["speaking"] else "non-speaking"
        lines.append(f"  {c['name']:<24} {role:<13} scenes {', '.join(c['scenes'])}")
    props = db.elements(revision_id=rid)
    lines.append("ELEMENTS")
    for e in props:
        lines.append(f"  {e['category']:<10} {e['label']:<24} scenes {', '.join(e['scenes'])}")
    aliases = db.alias_proposals(rid)
    if aliases:
        lines.append("ALIAS PROPOSALS")
        for a in aliases:
            lines.append(f"  {a['alias']} → {a['canonical']} ({a['reason']}) [{a['status']}]")
    return "\n".join(lines) + "\n"
