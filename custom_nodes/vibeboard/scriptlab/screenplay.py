"""The screenplay as Script Lab sees it: typed elements laid out in one canonical text with character offsets.

Every importer (Fountain, FDX, plain text) produces a `Screenplay`. Its `text` is the script text that all
evidence spans point into: `text[start:end]` of an element is exactly that element's printed text. Notes and
boneyard never enter `text` (they are kept apart in `notes` / `boneyards`), so no span can land in them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional

# Element kinds (one vocabulary for every importer).
HEADING, ACTION, CHARACTER, PARENTHETICAL, DIALOGUE = "heading", "action", "character", "parenthetical", "dialogue"
TRANSITION, CENTERED, LYRIC, PAGE_BREAK, SECTION, SYNOPSIS = ("transition", "centered", "lyric", "page_break",
                                                            "section", "synopsis")
SPEECH = (CHARACTER, PARENTHETICAL, DIALOGUE)  # printed as one block, lines not separated by a blank line
NOT_PRINTED = (SECTION, SYNOPSIS)  # Fountain outline elements: in the model, not on the page


@dataclass
class Element:
    kind: str
    text: str                       # printed text (character: "NAME (EXT)", parenthetical: "(…)")
    name: str = ""                  # character cue: the name without extension
    extension: str = ""             # character cue: V.O., O.S., CONT'D …
    dual: str = ""                  # "", "left" or "right" for dual dialogue
    forced: bool = False
    scene_number: str = ""          # heading: an explicit scene number (#12A#)
    start: int = 0                  # offsets into Screenplay.text
    end: int = 0
    tags: List[dict] = field(default_factory=list)  # FDX tags carried by import: {category, label, start, end}


@dataclass
class Screenplay:
    title: Dict[str, str] = field(default_factory=dict)
    elements: List[Element] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    boneyards: List[str] = field(default_factory=list)
    text: str = ""
    source_format: str = ""
    parser: str = ""

    def span(self, start: int, end: int) -> str:
        return self.text[start:end]


_INLINE_NOTE = re.compile(r"\[\[.*?\]\]", re.S)
_INLINE_BONEYARD = re.compile(r"/\*.*?\*/", re.S)


def strip_hidden(text: str, notes: Optional[list] = None, boneyards: Optional[list] = None) -> str:
    """Remove inline [[notes]] and /* boneyard */ from element text, collecting them when lists are given."""
    if notes is not None:
        notes.extend(m.group(0)[2:-2].strip() for m in _INLINE_NOTE.finditer(text))
    if boneyards is not None:
        boneyards.extend(m.group(0)[2:-2].strip() for m in _INLINE_BONEYARD.finditer(text))
    text = _INLINE_BONEYARD.sub("", _INLINE_NOTE.sub("", text))
    return re.sub(r"[ \t]+\n", "\n", re.sub(r"[ \t]{2,}", " ", text)).strip()


def layout(play: Screenplay) -> Screenplay:
    """Lay the elements out into `play.text` and set each element's start/end (blocks separated by a blank line,
    the lines of one speech by a newline). Offsets of FDX tags (relative to their element) become absolute."""
    parts: List[str] = []
    pos = 0
    prev = None
    for el in play.elements:
        if el.kind in NOT_PRINTED:
            el.start = el.end = pos
            continue
        if prev is not None:
            sep = "\n" if (el.kind in (PARENTHETICAL, DIALOGUE) and prev.kind in SPEECH) else "\n\n"
            parts.append(sep)
            pos += len(sep)
        el.start, el.end = pos, pos + len(el.text)
        for tag in el.tags:
            tag["start"] += el.start
            tag["end"] += el.start
        parts.append(el.text)
        pos = el.end
        prev = el
    play.text = "".join(parts) + ("\n" if parts else "")
    return play


def character_cue(name: str, extension: str = "") -> str:
    return f"{name} ({extension})" if extension else name
