"""Screenplay import: Fountain (fountain-py, or screenplay-tools on request), Final Draft FDX, plain text.

Parser choice (checked on a script with boneyard, notes, multi-line title page, forced headings, `--` in
headings, transitions, centered text, dual dialogue and extensions — tests/test_scriptlab_import.py):
- fountain-py is the default for Fountain: it reads `FADE IN:`/`FADE OUT.` as transitions, keeps a boneyard
  on the title page out of the script and gives scene numbers; screenplay-tools reads `FADE IN:` as a scene
  heading and leaks a title-page boneyard into an Action paragraph (we strip those marks ourselves).
- FDX is read with the standard library's XML parser: screenplay-tools' FDX reader keeps only the first `<Text>`
  run of a paragraph and ignores `<TagData>`, and both matter here (styled runs, breakdown tags).
"""
from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET

from . import categories
from .screenplay import (ACTION, CENTERED, CHARACTER, DIALOGUE, HEADING, LYRIC, PAGE_BREAK, PARENTHETICAL,
                         SECTION, SYNOPSIS, TRANSITION, Element, Screenplay, character_cue, layout, strip_hidden)

PARSERS = ["fountain-py", "screenplay-tools"]
_SLUG = re.compile(r"^(INT|EXT|EST|INT\.?/EXT|I/E)[ .]", re.I)
MAX_SCRIPT_BYTES = 20 * 1024 * 1024


class ImportError_(ValueError):
    """The file is not a screenplay we can read (message says why)."""


def _need(module: str, package: str):
    try:
        return __import__(module)
    except ImportError as exc:
        raise ImportError_(f"reading this script needs the '{package}' package: pip install vibeboard[scriptlab] "
                           f"({exc})") from exc


def load_script(path: str, parser: str = "fountain-py") -> Screenplay:
    """Read a screenplay file; the format comes from the extension (.fountain/.spmd/.txt/.fdx) or the content."""
    if os.path.getsize(path) > MAX_SCRIPT_BYTES:
        raise ImportError_(f"{path}: larger than {MAX_SCRIPT_BYTES // 2**20} MB; not a screenplay")
    with open(path, "rb") as handle:
        raw = handle.read()
    text = raw.decode("utf-8-sig", errors="replace")
    return parse_script(text, fmt=_format_of(path, text), parser=parser)


def _format_of(path: str, text: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext == ".fdx" or text.lstrip().startswith("<?xml") or "<FinalDraft" in text[:2000]:
        return "fdx"
    return "text" if ext == ".txt" else "fountain"


def parse_script(text: str, fmt: str = "fountain", parser: str = "fountain-py") -> Screenplay:
    if fmt == "fdx":
        return parse_fdx(text)
    if fmt == "text":
        # Plain-text screenplays (e.g. saved from a PDF) are indented; Fountain reads them once dedented.
        text = "\n".join(line.strip() for line in text.splitlines())
        play = parse_fountain(text, parser)
        play.source_format = "text"
        return play
    return parse_fountain(text, parser)


# --- Fountain ------------------------------------------------------------------------------------------------

def parse_fountain(text: str, parser: str = "fountain-py") -> Screenplay:
    if parser == "fountain-py":
        play = _fountain_py(text)
    elif parser == "screenplay-tools":
        play = _screenplay_tools(text)
    else:
        raise ImportError_(f"unknown Fountain parser {parser!r}; choose one of {PARSERS}")
    play.source_format, play.parser = "fountain", parser
    return layout(play)


def _fountain_py(text: str) -> Screenplay:
    fountain = _need("fountain", "fountain-py")
    doc = fountain.FountainParser().parse(text)
    play = Screenplay(title={str(k).title(): str(v) for k, v in (doc.metadata or {}).items()})
    kinds = {"SCENE_HEADING": HEADING, "ACTION": ACTION, "TRANSITION": TRANSITION, "CENTERED": CENTERED,
             "LYRICS": LYRIC, "PAGE_BREAK": PAGE_BREAK, "SECTION": SECTION, "SYNOPSIS": SYNOPSIS,
             "DIALOGUE": DIALOGUE, "PARENTHETICAL": PARENTHETICAL}

    def add(e, dual=""):
        name = e.type.name
        meta = e.metadata or {}
        if name == "NOTE":
            play.notes.append(e.text.strip()[2:-2].strip())
        elif name == "BONEYARD":
            play.boneyards.append(e.text.strip()[2:-2].strip())
        elif name == "DUAL_DIALOGUE":
            add(meta["left_character"], "left")
            for sub in meta.get("left_dialogue", []):
                add(sub, "left")
            add(meta["right_character"], "right")
            for sub in meta.get("right_dialogue", []):
                add(sub, "right")
        elif name == "CHARACTER":
            cue = e.text.strip().rstrip("^").strip()
            ext = meta.get("extension", "") or ""
            play.elements.append(Element(CHARACTER, character_cue(cue, ext), name=cue, extension=ext, dual=dual,
                                         forced=bool(meta.get("forced"))))
        elif name in kinds:
            body = "" if name == "PAGE_BREAK" else strip_hidden(e.text, play.notes, play.boneyards)
            if not body and name != "PAGE_BREAK":
                return
            if name == "PARENTHETICAL" and not body.startswith("("):
                body = f"({body})"
            play.elements.append(Element(kinds[name], body, dual=dual, forced=bool(meta.get("forced")),
                                         scene_number=str(meta.get("scene_number") or "")))

    for e in doc.elements:
        add(e)
    return play


def _screenplay_tools(text: str) -> Screenplay:
    _need("screenplay_tools", "screenplay-tools")
    from screenplay_tools.fountain.parser import Parser
    from screenplay_tools.screenplay import ElementType as T
    p = Parser()
    p.add_text(text)
    script = p.script
    play = Screenplay(title={e.key.title(): strip_hidden(e.text_raw) for e in script.titleEntries})
    play.notes = [n.text_raw.strip() for n in script.notes]
    play.boneyards = [b.text_raw.strip() for b in script.boneyards]
    kinds = {T.HEADING: HEADING, T.ACTION: ACTION, T.TRANSITION: TRANSITION, T.LYRIC: LYRIC,
             T.PAGEBREAK: PAGE_BREAK, T.SECTION: SECTION, T.SYNOPSIS: SYNOPSIS, T.DIALOGUE: DIALOGUE,
             T.PARENTHETICAL: PARENTHETICAL}
    # screenplay-tools leaves placeholders such as "[[0]]" / "/*1*/" where notes and boneyards were.
    placeholder = re.compile(r"\[\[\d+\]\]|/\*\d+\*/")
    elements = script.elements
    for i, e in enumerate(elements):
        if e.type == T.CHARACTER:
            dual = ""
            if e.is_dual_dialogue:
                dual = "right"
                for prev in reversed(play.elements):  # the speech before this cue is the left column
                    if prev.kind not in (CHARACTER, PARENTHETICAL, DIALOGUE):
                        break
                    prev.dual = "left"
                    if prev.kind == CHARACTER:
                        break
            play.elements.append(Element(CHARACTER, character_cue(e.name, e.extension or ""), name=e.name,
                                         extension=e.extension or "", dual=dual, forced=e.forced))
            continue
        body = placeholder.sub("", e.text_raw).strip()
        if e.type in (T.NOTE, T.BONEYARD) or (not body and e.type != T.PAGEBREAK):
            continue
        kind = kinds.get(e.type, ACTION)
        if kind == HEADING and not e.forced and body.endswith(":") and not _SLUG.match(body):
            kind = TRANSITION  # screenplay-tools reads "FADE IN:" as a scene heading
        if kind == ACTION and getattr(e, "centered", False):
            kind, body = CENTERED, body.strip()
        if kind == PARENTHETICAL:
            body = f"({body})"
        last_cue = next((x for x in reversed(play.elements) if x.kind == CHARACTER), None)
        dual = last_cue.dual if (kind in (DIALOGUE, PARENTHETICAL) and last_cue and play.elements[-1].kind in
                                 (CHARACTER, DIALOGUE, PARENTHETICAL)) else ""
        play.elements.append(Element(kind, re.sub(r"\n{3,}", "\n\n", body), dual=dual,
                                     forced=getattr(e, "forced", False),
                                     scene_number=str(getattr(e, "scene_number", "") or "")))
    return play


# --- Final Draft FDX -----------------------------------------------------------------------------------------

_FDX_KINDS = {"Scene Heading": HEADING, "Action": ACTION, "General": ACTION, "Character": CHARACTER,
              "Dialogue": DIALOGUE, "Parenthetical": PARENTHETICAL, "Transition": TRANSITION, "Shot": HEADING,
              "Lyrics": LYRIC, "New Act": SECTION, "End of Act": SECTION, "Cast List": ACTION}


def parse_fdx(text: str) -> Screenplay:
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise ImportError_("FDX with a DOCTYPE/ENTITY declaration refused (entity expansion is unsafe)")
    try:
        root = ET.fromstring(text.encode("utf-8"))
    except ET.ParseError as exc:
        raise ImportError_(f"not a valid FDX (XML) file: {exc}") from exc
    if root.tag != "FinalDraft":
        raise ImportError_(f"not a Final Draft file: root element is <{root.tag}>, expected <FinalDraft>")
    play = Screenplay(source_format="fdx", parser="fdx-xml")
    tag_labels = _fdx_tag_map(root)
    content = root.find("Content")
    for para in (content.findall("Paragraph") if content is not None else []):
        dual = para.find("DualDialogue")
        if dual is not None:
            cues = 0
            for sub in dual.findall("Paragraph"):
                cues += sub.get("Type") == "Character"
                _fdx_paragraph(sub, play, tag_labels, "left" if cues <= 1 else "right")
            continue
        _fdx_paragraph(para, play, tag_labels, "")
    play.title = _fdx_title(root)
    return layout(play)


def _fdx_paragraph(para, play: Screenplay, tag_labels: dict, dual: str) -> None:
    ptype = para.get("Type", "Action")
    kind = _FDX_KINDS.get(ptype, ACTION)
    if para.get("Alignment") == "Center" and kind == ACTION:
        kind = CENTERED
    body, tags = "", []
    for run in para.findall("Text"):
        piece = "".join(run.itertext())
        number = run.get("TagNumber")
        if number and number in tag_labels and piece.strip():
            cat, label = tag_labels[number]
            lead = len(piece) - len(piece.lstrip())
            tags.append({"category": cat, "label": label, "start": len(body) + lead,
                         "end": len(body) + lead + len(piece.strip()), "source": "user"})
        body += piece
    note = para.find("ScriptNote")
    if note is not None:
        play.notes.append(" ".join("".join(t.itertext()) for t in note.iter("Text")).strip())
    stripped = body.strip()
    shift = len(body) - len(body.lstrip())
    for tag in tags:
        tag["start"] -= shift
        tag["end"] -= shift
    if not stripped:
        return
    if kind == CHARACTER:
        name, ext = stripped, ""
        m = re.match(r"^(.*?)\s*\(([^()]*)\)\s*$", stripped)
        if m:
            name, ext = m.group(1).strip(), m.group(2).strip()
        play.elements.append(Element(CHARACTER, character_cue(name, ext), name=name, extension=ext, dual=dual,
                                     tags=tags))
        return
    if kind == PARENTHETICAL and not stripped.startswith("("):
        stripped = f"({stripped})"
        for tag in tags:
            tag["start"] += 1
            tag["end"] += 1
    play.elements.append(Element(kind, stripped, dual=dual, scene_number=para.get("Number", "") or "",
                                 tags=tags))


def _fdx_tag_map(root) -> dict:
    """TagNumber → (category key, label) from <TagData>; unknown category GUIDs become custom categories."""
    data = root.find("TagData")
    if data is None:
        return {}
    cats = {}
    for c in data.iter("TagCategory"):
        guid = c.get("Id", "")
        cat = categories.BY_GUID.get(guid)
        if cat is None:
            name = c.get("Name", "Custom")
            cat = categories.register_custom(re.sub(r"\W+", "_", name.lower()).strip("_") or "custom", name)
        cats[guid] = cat.key
    defs = {d.get("Id"): (cats.get(d.get("CatId"), "misc"), d.get("Label", "")) for d in data.iter("TagDefinition")}
    out = {}
    for tag in data.iter("Tag"):
        def_id = (tag.findtext("DefId") or "").strip()
        if def_id in defs:
            out[tag.get("Number")] = defs[def_id]
    return out


def _fdx_title(root) -> dict:
    title = {}
    page = root.find("TitlePage")
    if page is None:
        return title
    lines = ["".join(t.itertext()).strip() for p in page.iter("Paragraph") for t in [p] if "".join(p.itertext()).strip()]
    if lines:
        title["Title"] = lines[0]
    if len(lines) > 1:
        title["Credit"] = "\n".join(lines[1:])
    return title
