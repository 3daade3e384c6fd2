"""Deterministic breakdown: scenes, cast, elements and alias proposals from the parsed script, no LLM needed.

What the parser can know for sure: scene headings (INT/EXT, set, time of day), speakers, eighths from the
paginator. What rules can propose from action lines: characters named there (speaking cast seen without a
line = non-speaking in that scene), capitalised elements (screenplay convention for props, sounds, vehicles …)
sorted by small lexicons, and lowercase words from the same lexicons (a "dog" is an animal). Every tag points
at the exact characters of the script text it came from (`start`/`end` into `Screenplay.text`).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional

from . import paginate
from .screenplay import ACTION, CHARACTER, HEADING, Screenplay

INT_EXT = re.compile(r"^(?P<ie>INT\.?/EXT\.?|EXT\.?/INT\.?|I/E\.?|INT\.|EXT\.|EST\.|INT |EXT )\s*", re.I)
TIMES = ["DAY", "NIGHT", "MORNING", "AFTERNOON", "EVENING", "DUSK", "DAWN", "SUNSET", "SUNRISE", "CONTINUOUS",
         "LATER", "MOMENTS LATER", "SAME", "SAME TIME", "NOON", "MIDNIGHT"]
DAYLIKE = {"DAY", "MORNING", "AFTERNOON", "NOON", "DAWN", "SUNRISE"}
NIGHTLIKE = {"NIGHT", "EVENING", "DUSK", "SUNSET", "MIDNIGHT"}
TITLES = ["CAPTAIN", "CAPT", "OLD", "YOUNG", "MR", "MRS", "MS", "MISS", "DR", "DOCTOR", "DETECTIVE", "DET",
          "OFFICER", "SERGEANT", "SGT", "LITTLE", "BIG", "UNCLE", "AUNT", "FATHER", "MOTHER", "SISTER", "BROTHER",
          "AGENT", "PROFESSOR", "PROF", "LADY", "LORD", "SIR", "KING", "QUEEN", "PRINCE", "PRINCESS"]

# Small lexicons: they sort capitalised elements and catch common lowercase ones. Anything capitalised that no
# lexicon claims becomes a prop (the screenplay convention capitalises props, sounds and effects on first use).
LEXICON = {
    "animals": "dog dogs cat cats horse horses gull gulls bird birds crow crows fish cow cows sheep goat goats "
               "rat rats mouse mice wolf wolves fox snake parrot owl pig pigs chicken chickens duck ducks collie "
               "terrier",
    "vehicles": "van car cars truck bus taxi cab boat ship motorbike motorcycle bicycle bike tractor train "
                "helicopter plane jeep limo limousine ambulance trawler ferry",
    "extras": "fishermen fisherman crowd crowds guards guard soldiers passers-by pedestrians villagers waiters "
              "waiter dancers patrons customers tourists sailors onlookers nurses students workers police",
    "sound": "thunder bang crash knock knocking gunshot gunshots scream siren sirens explosion ring ringing "
             "whistle bell bells boom thud",
    "sfx": "rain storm smoke fire fog snow wind lightning sparks",
    "vfx": "beam hologram portal",
    "wardrobe": "coat oilskin jacket hat cap dress suit uniform boots scarf gloves cloak raincoat apron tie "
                "shirt",
    "makeup": "scar blood bruise tattoo wig beard",
    "props": "compass lamp bottle whiskey net nets cart gun knife letter phone map key keys lantern rope glass "
             "book camera",
}
WORD_CATEGORY = {w: cat for cat, words in LEXICON.items() for w in words.split()}
SCRIPT_TERMS = set("FADE IN OUT TO CUT SMASH MATCH DISSOLVE CONTINUOUS LATER DAY NIGHT INT EXT POV CLOSE ANGLE "
                   "INSERT BACK SCENE SUPER TITLE THE END MORE CONT'D CONTD ON WIDE SHOT OS VO OC BLACK WHITE "
                   "FLASHBACK MONTAGE SERIES OF SHOTS INTERCUT".split())
CAPS = re.compile(r"\b[A-Z][A-Z0-9'’\-]+(?:\s+[A-Z][A-Z0-9'’\-]+)*\b")


@dataclass
class Tag:
    category: str
    label: str
    start: int
    end: int
    scene: int                       # scene index (0-based) the evidence sits in
    source: str = "parser"           # parser | llm | user
    status: str = "accepted"         # accepted | proposed | rejected
    implied: bool = False
    note: str = ""


@dataclass
class Scene:
    index: int
    number: str
    heading: str
    int_ext: str
    set_name: str
    time_of_day: str
    day_night: str
    first_element: int
    last_element: int                # exclusive
    start: int                       # offsets of the scene in the script text
    end: int
    eighths: int = 0
    page: int = 1
    script_day: int = 1
    synopsis: str = ""
    speaking: List[str] = field(default_factory=list)
    fingerprint: str = ""            # hash of the scene text: revisions re-tag only scenes whose hash changed


@dataclass
class AliasProposal:
    canonical: str
    alias: str
    reason: str
    evidence: List[List[int]]        # [[start, end], …] spans of both names
    status: str = "proposed"


@dataclass
class Breakdown:
    title: Dict[str, str]
    scenes: List[Scene]
    tags: List[Tag]
    aliases: List[AliasProposal]
    page_count: int
    text: str
    elements: List[dict] = field(default_factory=list)   # the screenplay's elements, as stored in the DB

    def to_dict(self) -> dict:
        return {"title": self.title, "page_count": self.page_count,
                "scenes": [asdict(s) for s in self.scenes], "tags": [asdict(t) for t in self.tags],
                "aliases": [asdict(a) for a in self.aliases]}

    def cast(self) -> List[str]:
        return sorted({t.label for t in self.tags if t.category == "cast" and t.status == "accepted"})


def parse_heading(text: str) -> tuple:
    """'EXT. HARBOUR ROAD--DAY' → ('EXT', 'HARBOUR ROAD', 'DAY'); forced/odd headings keep the whole set."""
    body = re.sub(r"\s*#[^#]+#\s*$", "", text.strip())
    m = INT_EXT.match(body)
    ie = ""
    if m:
        raw = m.group("ie").upper().replace(".", "").strip()
        ie = {"I/E": "INT/EXT", "EXT/INT": "INT/EXT", "EST": "EXT"}.get(raw, raw)
        body = body[m.end():]
    parts = [p.strip() for p in re.split(r"\s+-{1,2}\s+|--|\s+–\s+", body) if p.strip()]
    tod = ""
    if len(parts) > 1 and parts[-1].upper() in TIMES:
        tod = parts.pop().upper()
    return ie, " - ".join(parts).upper(), tod


def _scenes(play: Screenplay, layout) -> List[Scene]:
    heads = [i for i, e in enumerate(play.elements) if e.kind == HEADING]
    if not heads and any(e.kind in (ACTION, CHARACTER) for e in play.elements):
        heads = [0]  # a script (or a short) with no scene heading at all is one scene without a set
    scenes: List[Scene] = []
    for n, first in enumerate(heads):
        last = heads[n + 1] if n + 1 < len(heads) else len(play.elements)
        el = play.elements[first]
        ie, set_name, tod = parse_heading(el.text) if el.kind == HEADING else ("", "", "")
        end_el = last - 1
        start, end = el.start, play.elements[end_el].end
        scenes.append(Scene(index=n, number=el.scene_number or str(n + 1),
                            heading=el.text if el.kind == HEADING else "", int_ext=ie,
                            set_name=set_name, time_of_day=tod, day_night="", first_element=first,
                            last_element=last, start=start, end=end,
                            page=layout.element_page.get(first, 1)))
    eighths = paginate.eighths_by_element_range(layout, [(s.first_element, s.last_element) for s in scenes])
    day, last_dn = 1, ""
    for scene, e8 in zip(scenes, eighths):
        scene.eighths = e8
        dn = "D" if scene.time_of_day in DAYLIKE else "N" if scene.time_of_day in NIGHTLIKE else ""
        scene.day_night = dn or last_dn  # CONTINUOUS / LATER / no time: same as the scene before
        # a new script day starts when day follows night (the next morning); no LLM needed for that much
        if dn == "D" and last_dn == "N":
            day += 1
        scene.script_day = day
        last_dn = scene.day_night or last_dn
        scene.fingerprint = hashlib.sha256(play.text[scene.start:scene.end].encode()).hexdigest()[:16]
        action = next((play.elements[i] for i in range(scene.first_element, scene.last_element)
                       if play.elements[i].kind == ACTION), None)
        if action is not None:
            scene.synopsis = re.split(r"(?<=[.!?])\s", action.text.strip(), maxsplit=1)[0][:160]
    return scenes


def _scene_of(scenes: List[Scene], offset: int) -> Optional[int]:
    for s in scenes:
        if s.start <= offset < s.end:
            return s.index
    return None


def build_breakdown(play: Screenplay) -> Breakdown:
    layout = paginate.paginate(play)
    scenes = _scenes(play, layout)
    tags: List[Tag] = []
    seen = set()

    def add(cat, label, start, end, scene, **kw):
        key = (cat, label, scene)
        if scene is None or key in seen:
            return
        seen.add(key)
        tags.append(Tag(cat, label, start, end, scene, **kw))

    # locations: the set of each heading
    for s in scenes:
        el = play.elements[s.first_element]
        pos = el.text.upper().find(s.set_name) if s.set_name else -1
        if pos >= 0:
            add("location", s.set_name, el.start + pos, el.start + pos + len(s.set_name), s.index)
    # speaking cast from cues (evidence = the name in the cue)
    speakers: Dict[str, int] = {}
    for el in play.elements:
        if el.kind == CHARACTER:
            sc = _scene_of(scenes, el.start)
            speakers.setdefault(el.name.upper(), 0)
            speakers[el.name.upper()] += 1
            if sc is not None and el.name.upper() not in scenes[sc].speaking:
                scenes[sc].speaking.append(el.name.upper())
            add("cast", el.name.upper(), el.start, el.start + len(el.name), sc)
    names = sorted(speakers, key=len, reverse=True)
    for el in play.elements:
        if el.kind != ACTION:
            continue
        sc = _scene_of(scenes, el.start)
        taken: List[range] = []
        # capitalised runs first: "MARA VOSS (30s…)" introduces a character, "OIL LAMP" is a prop …
        for m in CAPS.finditer(el.text):
            label = m.group(0)
            words = label.lower().split()
            if len(label) < 3 or all(w.strip("'’-") in SCRIPT_TERMS for w in label.upper().split()):
                continue  # "FADE OUT", "CONTINUOUS", "V.O.": screenplay vocabulary, not an element
            upper = label.upper()
            if upper in speakers or (len(words) > 1 and words[0].upper() in speakers
                                     and not any(w in WORD_CATEGORY for w in words)):
                cat = "cast"
            else:
                cat = WORD_CATEGORY.get(words[-1], "")
                if not cat and len(words) > 1 and words[0] in WORD_CATEGORY:
                    cat = WORD_CATEGORY[words[0]]
                if not cat:
                    titled = any(w.upper() in TITLES for w in label.split())
                    cat = "cast" if titled or _looks_like_intro(el.text, m.end()) else "props"
            taken.append(range(m.start(), m.end()))
            add(cat, upper, el.start + m.start(), el.start + m.end(), sc)
        # speaking characters named in action lines in any case ("Mara lights …"): appearance in this scene
        for name in names:
            for m in re.finditer(rf"\b{re.escape(name)}\b", el.text, re.I):
                if any(m.start() in r for r in taken):
                    continue
                taken.append(range(m.start(), m.end()))
                add("cast", name, el.start + m.start(), el.start + m.end(), sc)
        # lowercase lexicon words (a "dog", "gulls", her "coat")
        for m in re.finditer(r"[A-Za-z][A-Za-z\-]+", el.text):
            if any(m.start() in r for r in taken):
                continue
            cat = WORD_CATEGORY.get(m.group(0).lower())
            if cat:
                add(cat, m.group(0).upper(), el.start + m.start(), el.start + m.end(), sc)
    for t in tags:
        if t.category == "cast":
            t.note = "speaking" if t.label in scenes[t.scene].speaking else "non-speaking"
    tags.sort(key=lambda t: (t.scene, t.start))
    return Breakdown(title=dict(play.title), scenes=scenes, tags=tags, aliases=alias_proposals(play, tags),
                     page_count=layout.page_count, text=play.text,
                     elements=[{k: v for k, v in asdict(e).items() if k != "tags"} for e in play.elements])


def _looks_like_intro(text: str, after: int) -> bool:
    """A capitalised name followed by "(30s" or ", 40," is how a script introduces a character."""
    return bool(re.match(r"\s*(\(|,\s*\d)", text[after:after + 6]))


def _core_name(name: str) -> str:
    words = [w for w in name.upper().replace(".", "").split() if w not in TITLES]
    return " ".join(words)


def alias_proposals(play: Screenplay, tags: List[Tag]) -> List[AliasProposal]:
    """Characters that are probably one person: a name with and without a title (CAPTAIN TOMAS / TOMAS),
    or a full name and its first name (MARA VOSS / MARA). Proposals only; a user accepts or rejects them."""
    first_span: Dict[str, List[int]] = {}
    count: Dict[str, int] = {}
    for t in tags:
        if t.category == "cast":
            first_span.setdefault(t.label, [t.start, t.end])
            count[t.label] = count.get(t.label, 0) + 1
    names = sorted(first_span)
    out: List[AliasProposal] = []
    for a in names:
        for b in names:
            if a == b:
                continue
            reason = ""
            if _core_name(a) == b:
                reason = f"'{a}' is '{b}' with a title"
            elif len(b.split()) == 1 and len(a.split()) == 2 and a.split()[0] == b and a.split()[1] not in TITLES:
                reason = f"'{b}' is the first name of '{a}'"
            if reason:
                # canonical = the name used most often (ties: the shorter one)
                canon, alias = sorted([a, b], key=lambda n: (-count.get(n, 0), len(n)))
                if not any({p.canonical, p.alias} == {canon, alias} for p in out):
                    out.append(AliasProposal(canon, alias, reason, [first_span[canon], first_span[alias]]))
    return out
