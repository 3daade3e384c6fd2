"""Exports from the asset database: JSON, CSV/XLSX breakdown sheets, Final Draft FDX with TagData, shot list.

FDX TagData layout (as Final Draft writes it): `<TagData><TagCategories>` with the fixed category GUIDs,
`<TagDefinitions>` (CatId, Id, Label, Number) — one per distinct (category, label) — and `<Tags>` (Number →
DefId); the tagged words in the script text are `<Text TagNumber="N">` runs inside their paragraph.
"""
from __future__ import annotations

import csv
import io
import json
import uuid
import xml.etree.ElementTree as ET
from typing import List, Optional

from . import categories, paginate
from .screenplay import CENTERED, CHARACTER, DIALOGUE, HEADING, LYRIC, PARENTHETICAL, TRANSITION, Screenplay

SHEET_COLUMNS = ["scene", "int_ext", "set", "day_night", "time_of_day", "pages", "page", "script_day",
                 "synopsis", "cast", "extras", "props", "wardrobe", "vehicles", "animals", "sfx", "vfx", "sound",
                 "makeup", "other"]
_FDX_TYPES = {HEADING: "Scene Heading", CHARACTER: "Character", DIALOGUE: "Dialogue",
              PARENTHETICAL: "Parenthetical", TRANSITION: "Transition", LYRIC: "Lyrics"}
_TAG_NS = uuid.UUID("6f1c1f0e-5b8f-4a57-9a57-76f3b0a1d0aa")  # tag definition ids: uuid5(namespace, cat/label)


def to_json(db, revision_id: Optional[int] = None) -> dict:
    rev = db.revision(revision_id) if revision_id else db.latest_revision()
    rid = rev["id"]
    return {"script": rev["script"], "revision": rev["number"], "page_count": rev["page_count"],
            "title_page": rev["title_page"], "changes": rev["changes"],
            "scenes": [{k: s[k] for k in ("number", "heading", "int_ext", "set_name", "time_of_day", "day_night",
                                          "eighths", "page", "script_day", "synopsis")}
                       | {"pages": paginate.format_eighths(s["eighths"])} for s in db.scenes(rid)],
            "cast": db.characters(rid), "locations": db.locations(rid), "elements": db.elements(revision_id=rid),
            "tags": [{k: t[k] for k in ("scene_number", "category", "label", "start", "end", "source", "status",
                                        "implied", "evidence", "note")} for t in db.tags(rid, status=None)],
            "aliases": [{k: a[k] for k in ("canonical", "alias", "reason", "evidence", "status")}
                        for a in db.alias_proposals(rid)],
            "shots": [{k: s[k] for k in ("scene_number", "number", "description", "workflow", "params")}
                      for s in db.shots(rid)]}


def sheet_rows(db, revision_id: Optional[int] = None) -> List[dict]:
    """One row per scene, elements grouped by category (the AD's breakdown sheet)."""
    rid = revision_id or db.latest_revision()["id"]
    tags = db.tags(rid)
    rows = []
    for s in db.scenes(rid):
        row = {"scene": s["number"], "int_ext": s["int_ext"], "set": s["set_name"], "day_night": s["day_night"],
               "time_of_day": s["time_of_day"], "pages": paginate.format_eighths(s["eighths"]), "page": s["page"],
               "script_day": s["script_day"], "synopsis": s["synopsis"]}
        groups: dict = {}
        for t in tags:
            if t["scene_idx"] != s["idx"] or t["category"] == "location":
                continue
            col = t["category"] if t["category"] in SHEET_COLUMNS else "other"
            if t["label"] not in groups.setdefault(col, []):
                groups[col].append(t["label"])
        for col in SHEET_COLUMNS[9:]:
            row[col] = "; ".join(groups.get(col, []))
        rows.append(row)
    return rows


def to_csv(db, revision_id: Optional[int] = None) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SHEET_COLUMNS)
    writer.writeheader()
    writer.writerows(sheet_rows(db, revision_id))
    return buf.getvalue()


def to_xlsx(db, path: str, revision_id: Optional[int] = None) -> str:
    try:
        from openpyxl import Workbook
        from openpyxl.styles import Font
    except ImportError as exc:
        raise RuntimeError("XLSX export needs openpyxl: pip install vibeboard[scriptlab]") from exc
    wb = Workbook()
    ws = wb.active
    ws.title = "Breakdown"
    ws.append(SHEET_COLUMNS)
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for row in sheet_rows(db, revision_id):
        ws.append([row[c] for c in SHEET_COLUMNS])
    shots = wb.create_sheet("Shots")
    shots.append(["scene", "shot", "description", "workflow"])
    for s in db.shots(revision_id):
        shots.append([s["scene_number"], s["number"], s["description"], s["workflow"]])
    wb.save(path)
    return path


def shot_list(db, revision_id: Optional[int] = None) -> List[dict]:
    """Shots for Shot Studio; a scene without planned shots gets one master shot from its heading/synopsis."""
    rid = revision_id or db.latest_revision()["id"]
    planned = db.shots(rid)
    out = []
    cast = {}
    for t in db.tags(rid, category="cast"):
        names = cast.setdefault(t["scene_idx"], [])
        if t["label"] not in names:
            names.append(t["label"])
    for s in db.scenes(rid):
        mine = [p for p in planned if p["scene_idx"] == s["idx"]]
        if not mine:
            out.append({"scene": s["number"], "shot": f"{s['number']}A", "description":
                        f"Master: {s['heading']}. {s['synopsis']}".strip(), "workflow": "shot_studio",
                        "cast": cast.get(s["idx"], []), "location": s["set_name"], "day_night": s["day_night"]})
        for p in mine:
            out.append({"scene": s["number"], "shot": p["number"], "description": p["description"],
                        "workflow": p["workflow"], "params": p["params"], "cast": cast.get(s["idx"], []),
                        "location": s["set_name"], "day_night": s["day_night"]})
    return out


def to_fdx(play: Screenplay, tags: List[dict]) -> str:
    """The script as FDX, every accepted tag written as TagData + a `<Text TagNumber>` run over its evidence."""
    root = ET.Element("FinalDraft", DocumentType="Script", Template="No", Version="5")
    content = ET.SubElement(root, "Content")
    defs: dict = {}
    numbered: List[tuple] = []  # (tag number, def id)
    spans = sorted((t for t in tags if t.get("status", "accepted") == "accepted"), key=lambda t: t["start"])
    dual_box = None  # the <DualDialogue> holding both speeches of a dual-dialogue pair
    for el in play.elements:
        if el.kind not in _FDX_TYPES and el.kind not in ("action", CENTERED):
            continue
        if not el.dual:
            dual_box = None
        elif el.kind == CHARACTER and el.dual == "left" or dual_box is None:
            dual_box = ET.SubElement(ET.SubElement(content, "Paragraph"), "DualDialogue")
        para = ET.SubElement(dual_box if el.dual else content, "Paragraph", Type=_FDX_TYPES.get(el.kind, "Action"))
        if el.kind == CENTERED:
            para.set("Alignment", "Center")
        if el.kind == HEADING and el.scene_number:
            para.set("Number", el.scene_number)
        pos = el.start
        mine = [t for t in spans if el.start <= t["start"] and t["end"] <= el.end]
        for t in mine:
            if t["start"] < pos:
                continue  # overlapping tags: the first one wins the run
            if t["start"] > pos:
                ET.SubElement(para, "Text").text = play.text[pos:t["start"]]
            cat = categories.BY_KEY.get(t["category"]) or categories.register_custom(t["category"], t["category"])
            key = (cat.key, t["label"])
            if key not in defs:
                defs[key] = str(uuid.uuid5(_TAG_NS, f"{cat.key}/{t['label']}"))
            numbered.append((len(numbered) + 1, defs[key]))
            run = ET.SubElement(para, "Text", TagNumber=str(len(numbered)))
            run.text = play.text[t["start"]:t["end"]]
            pos = t["end"]
        if pos < el.end or not mine:
            ET.SubElement(para, "Text").text = play.text[pos:el.end]
    data = ET.SubElement(root, "TagData")
    cats = ET.SubElement(data, "TagCategories")
    used = {k for k, _ in defs}
    for cat in categories.BY_KEY.values():
        if cat.guid or cat.key in used:
            guid = cat.guid or str(uuid.uuid5(_TAG_NS, "category/" + cat.key))
            ET.SubElement(cats, "TagCategory", Color=_fdx_color(cat.color), Id=guid, Name=cat.name,
                          Number=str(cat.number), Style="Bold")
    tdefs = ET.SubElement(data, "TagDefinitions")
    for n, ((cat_key, label), def_id) in enumerate(defs.items(), 1):
        cat = categories.BY_KEY[cat_key]
        ET.SubElement(tdefs, "TagDefinition", CatId=cat.guid or str(uuid.uuid5(_TAG_NS, "category/" + cat.key)),
                      Id=def_id, Label=label, Number=str(n))
    tag_el = ET.SubElement(data, "Tags")
    for number, def_id in numbered:
        ET.SubElement(ET.SubElement(tag_el, "Tag", Number=str(number)), "DefId").text = def_id
    title = ET.SubElement(root, "TitlePage")
    tcontent = ET.SubElement(title, "Content")
    for key, value in play.title.items():
        p = ET.SubElement(tcontent, "Paragraph", Alignment="Center")
        ET.SubElement(p, "Text").text = value if key == "Title" else f"{value}"
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8" standalone="no" ?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _fdx_color(hex6: str) -> str:
    """#RRGGBB → Final Draft's 48-bit #RRRRGGGGBBBB."""
    h = hex6.lstrip("#")
    return "#" + "".join(h[i:i + 2] * 2 for i in (0, 2, 4)).upper()


def dumps(data) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
