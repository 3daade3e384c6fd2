"""A screenplay paginator: lays the script out the way a printed page does, so page eighths mean something.

Page model (US Letter, Courier 12: 10 characters an inch, 6 lines an inch; the common screenplay template):
55 body lines a page; widths in characters — action/heading 60, character cue 38, parenthetical 25,
dialogue 35, transition 15, dual-dialogue columns 28/20/18. One blank line before each block, none inside a
speech. Break rules: a scene heading never ends a page (it moves on with at least two lines after it); a speech
splits only between lines with at least two dialogue lines on each side, adding "(MORE)" at the bottom and
"NAME (CONT'D)" at the top; an action block splits only with at least two lines on each side.
A scene's length is the page lines it occupies (its blank lines and continuation marks included) in eighths
of a page, rounded to the nearest eighth, never less than 1/8 — how an AD measures it on the printed page.
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

from .screenplay import (ACTION, CENTERED, CHARACTER, DIALOGUE, HEADING, LYRIC, NOT_PRINTED, PAGE_BREAK,
                         PARENTHETICAL, TRANSITION, Screenplay)

LINES_PER_PAGE = 55
WIDTH = {HEADING: 60, ACTION: 60, CENTERED: 60, CHARACTER: 38, PARENTHETICAL: 25, DIALOGUE: 35,
         TRANSITION: 15, LYRIC: 35}
DUAL_WIDTH = {CHARACTER: 20, PARENTHETICAL: 18, DIALOGUE: 28, LYRIC: 28}
MIN_SPLIT = 2


def wrap(text: str, width: int) -> List[str]:
    out: List[str] = []
    for line in text.split("\n"):
        out.extend(textwrap.wrap(line, width, break_long_words=True, break_on_hyphens=False) or [""])
    return out


@dataclass
class Unit:
    """What is placed as one piece: a single element, or a whole speech (cue + lines), or a dual pair."""
    kind: str
    elements: List[int]                       # element indices (for scene accounting)
    lines: List[Tuple[int, str]]              # (element index, printed line)
    cue: str = ""                             # speech: the cue for (CONT'D)
    body_from: int = 1                        # speech: index of the first dialogue line (after the cue)


@dataclass
class Layout:
    pages: List[List[Tuple[int, str]]] = field(default_factory=list)   # per page: (element index or -1, line)
    element_page: Dict[int, int] = field(default_factory=dict)         # element index → first page (1-based)

    @property
    def page_count(self) -> int:
        return len(self.pages)


def _units(play: Screenplay) -> List[Unit]:
    units: List[Unit] = []
    els = play.elements
    i = 0
    while i < len(els):
        el = els[i]
        if el.kind in NOT_PRINTED:
            i += 1
            continue
        if el.kind == CHARACTER:
            j = i + 1
            while j < len(els) and els[j].kind in (PARENTHETICAL, DIALOGUE, LYRIC):
                j += 1
            if el.dual == "left" and j < len(els) and els[j].kind == CHARACTER and els[j].dual == "right":
                k = j + 1
                while k < len(els) and els[k].kind in (PARENTHETICAL, DIALOGUE, LYRIC):
                    k += 1
                left = [(n, ln) for n in range(i, j) for ln in wrap(els[n].text, DUAL_WIDTH.get(els[n].kind, 28))]
                right = [(n, ln) for n in range(j, k) for ln in wrap(els[n].text, DUAL_WIDTH.get(els[n].kind, 28))]
                rows = []
                for r in range(max(len(left), len(right))):
                    a = left[r] if r < len(left) else (left[-1][0], "")
                    b = right[r] if r < len(right) else (right[-1][0], "")
                    rows.append((a[0], f"{a[1]:<30}{b[1]}".rstrip()))
                units.append(Unit("dual", list(range(i, k)), rows))  # a dual pair never splits
                i = k
                continue
            lines = [(i, ln) for ln in wrap(el.text, WIDTH[CHARACTER])]
            body_from = len(lines)
            for n in range(i + 1, j):
                lines += [(n, ln) for ln in wrap(els[n].text, WIDTH.get(els[n].kind, 35))]
            units.append(Unit("speech", list(range(i, j)), lines, cue=el.name, body_from=body_from))
            i = j
            continue
        if el.kind == PAGE_BREAK:
            units.append(Unit(PAGE_BREAK, [i], []))
        else:
            units.append(Unit(el.kind, [i], [(i, ln) for ln in wrap(el.text, WIDTH.get(el.kind, 60))]))
        i += 1
    return units


def paginate(play: Screenplay, lines_per_page: int = LINES_PER_PAGE) -> Layout:
    out = Layout(pages=[[]])
    units = _units(play)

    def room() -> int:
        return lines_per_page - len(out.pages[-1])

    def new_page():
        out.pages.append([])

    def put(item: Tuple[int, str]):
        out.pages[-1].append(item)
        if item[0] >= 0:
            out.element_page.setdefault(item[0], len(out.pages))

    for u_idx, unit in enumerate(units):
        if unit.kind == PAGE_BREAK:
            if out.pages[-1]:
                new_page()
            continue
        gap = 1 if out.pages[-1] else 0
        need = len(unit.lines)
        if unit.kind == HEADING:
            # keep the heading with at least two lines of what follows
            nxt = units[u_idx + 1] if u_idx + 1 < len(units) else None
            need += (1 + min(MIN_SPLIT, len(nxt.lines))) if nxt and nxt.lines else 0
        if gap + need > room() and out.pages[-1]:
            if not _split_fits(unit, room() - gap):
                new_page()
                gap = 0
        if gap:
            put((unit.elements[0], ""))
        _place(unit, out, put, new_page, room)
    if not out.pages[-1] and len(out.pages) > 1:
        out.pages.pop()
    return out


def _split_fits(unit: Unit, space: int) -> bool:
    """Can the unit start on this page (split across the break) within the break rules?"""
    n = len(unit.lines)
    if unit.kind == ACTION:
        return space >= MIN_SPLIT and n - space >= MIN_SPLIT
    if unit.kind == "speech":
        # cue + ≥2 dialogue lines + (MORE) here, ≥2 lines on the next page
        first = space - 1
        return first - unit.body_from >= MIN_SPLIT and n - first >= MIN_SPLIT
    return False


def _place(unit: Unit, out: Layout, put, new_page, room) -> None:
    lines = list(unit.lines)
    while lines:
        space = room()
        if len(lines) <= space:
            for item in lines:
                put(item)
            return
        if unit.kind == "speech" and space - 1 >= MIN_SPLIT and len(lines) - (space - 1) >= MIN_SPLIT:
            head, lines = lines[:space - 1], lines[space - 1:]
            for item in head:
                put(item)
            put((head[-1][0], "(MORE)"))
            new_page()
            lines.insert(0, (lines[0][0], f"{unit.cue} (CONT'D)"))
            continue
        if space >= MIN_SPLIT and len(lines) - space >= MIN_SPLIT and unit.kind not in ("dual", HEADING):
            head, lines = lines[:space], lines[space:]
            for item in head:
                put(item)
            new_page()
            continue
        if out.pages[-1]:
            new_page()
            continue
        # longer than a page and no rule applies: fill the page
        for item in lines[:space]:
            put(item)
        lines = lines[space:]
        new_page()


def eighths_by_element_range(layout: Layout, ranges: List[Tuple[int, int]],
                             lines_per_page: int = LINES_PER_PAGE) -> List[int]:
    """For each [first, last) element range (a scene), its length in eighths of a page (min 1)."""
    owner: Dict[int, int] = {}
    for s, (first, last) in enumerate(ranges):
        for e in range(first, last):
            owner[e] = s
    counts = [0] * len(ranges)
    for page in layout.pages:
        for elem, _ in page:
            if elem in owner:
                counts[owner[elem]] += 1
    return [max(1, int(round(c * 8 / lines_per_page))) for c in counts]


def format_eighths(eighths: int) -> str:
    """13 → "1 5/8" (how a breakdown sheet writes page counts)."""
    pages, rest = divmod(int(eighths), 8)
    if pages and rest:
        return f"{pages} {rest}/8"
    return f"{pages}" if pages else f"{rest}/8"
