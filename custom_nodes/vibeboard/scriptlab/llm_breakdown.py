"""LLM pass over the breakdown: implied elements, synopses, alias suggestions — as proposals, never accepted.

The model gets each scene's text with the rule-based tags already found and answers with one `submit_breakdown`
tool call. A reply is rejected (and sent back once with the reason) when it is not JSON, names an unknown
category or scene, or quotes words that are not verbatim in that scene — so every stored LLM tag has an
evidence span in the script. Only scenes whose text changed since the last revision are sent.
"""
from __future__ import annotations

from typing import List, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from . import categories
from .breakdown import AliasProposal, Breakdown, Tag

CATEGORY_KEYS = tuple(c.key for c in categories.FDX_CATEGORIES  # fixed: the tool schema (and cassettes) stay stable
                      if c.key not in ("synopsis", "script_day", "unit", "sequence"))
TOOL = "submit_breakdown"
SYSTEM = ("You are a first assistant director breaking down a screenplay. For each scene, add the production "
          "elements the rules below missed: props, wardrobe, makeup, extras, vehicles, animals, effects, sound "
          "and elements that are only implied (a storm implies rain effects). Every element must quote the exact "
          "words of that scene it comes from (copy them character for character). Mark implied ones implied=true. "
          "Suggest character aliases (one person named two ways) and, where the text shows it, the story day of a "
          "scene with the words that show it. Answer only by calling submit_breakdown.")


class ElementProposal(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scene: str = Field(description="the scene number as given")
    category: Literal[CATEGORY_KEYS] = Field(description="breakdown category")  # type: ignore[valid-type]
    label: str = Field(min_length=1, max_length=80, description="element name, e.g. BRASS COMPASS")
    quote: str = Field(min_length=1, max_length=200, description="exact words of the scene that show it")
    implied: bool = Field(False, description="true when the scene implies it without naming it")
    reason: str = Field("", max_length=200)


class AliasSuggestion(BaseModel):
    model_config = ConfigDict(extra="forbid")
    alias: str
    canonical: str
    reason: str = Field("", max_length=200)


class SceneNote(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scene: str
    synopsis: str = Field(max_length=240)
    script_day: Optional[int] = Field(None, ge=1, le=365, description="story day this scene happens on")
    day_quote: Optional[str] = Field(None, max_length=200, description="exact words of the scene that date it")


class BreakdownReply(BaseModel):
    model_config = ConfigDict(extra="forbid")
    elements: List[ElementProposal] = Field(default_factory=list)
    aliases: List[AliasSuggestion] = Field(default_factory=list)
    scenes: List[SceneNote] = Field(default_factory=list)


def build_prompt(bd: Breakdown, scene_indices: List[int]) -> str:
    parts = []
    for i in scene_indices:
        s = bd.scenes[i]
        found = sorted({f"{t.category}: {t.label}" for t in bd.tags if t.scene == i})
        parts.append(f"### SCENE {s.number}\n{bd.text[s.start:s.end]}\n-- already tagged: {'; '.join(found)}")
    cast = ", ".join(bd.cast())
    return f"Characters so far: {cast}\n\n" + "\n\n".join(parts)


def make_check(bd: Breakdown, scene_indices: List[int]):
    by_number = {bd.scenes[i].number: bd.scenes[i] for i in scene_indices}
    known_cast = set(bd.cast())

    def check(reply: BreakdownReply):
        problems = []
        for n, el in enumerate(reply.elements):
            scene = by_number.get(el.scene)
            if scene is None:
                problems.append(f"elements[{n}].scene: no scene {el.scene!r} in this request "
                                f"(scenes: {sorted(by_number)})")
            elif el.quote not in bd.text[scene.start:scene.end]:
                problems.append(f"elements[{n}].quote: {el.quote!r} is not verbatim in scene {el.scene}")
        for n, al in enumerate(reply.aliases):
            for name in (al.alias, al.canonical):
                if name.upper() not in known_cast:
                    problems.append(f"aliases[{n}]: {name!r} is not a character of this script")
        for n, note in enumerate(reply.scenes):
            scene = by_number.get(note.scene)
            if scene is None:
                problems.append(f"scenes[{n}].scene: no scene {note.scene!r} in this request")
            elif note.script_day is not None and (not note.day_quote or
                                                  note.day_quote not in bd.text[scene.start:scene.end]):
                problems.append(f"scenes[{n}].day_quote: a script day needs words of scene {note.scene} that "
                                f"show it, quoted verbatim (got {note.day_quote!r})")
        if problems:
            from ..llm.structured import ReplyRejected
            raise ReplyRejected("; ".join(problems[:10]))
    return check


def propose(bd: Breakdown, play, provider, db=None, skip_fingerprints: Optional[set] = None) -> dict:
    """Ask the LLM for proposals on the (changed) scenes and add them to `bd` as llm/proposed tags.
    Returns a report; a reply rejected twice adds nothing and says so in the report."""
    from ..llm.structured import StructuredOutputError, call_tool
    indices = [s.index for s in bd.scenes if s.fingerprint not in (skip_fingerprints or set())]
    report = {"used": True, "scenes": [bd.scenes[i].number for i in indices], "accepted_proposals": 0,
              "status": "ok", "errors": [], "usage": {}}
    if not indices:
        report["status"] = "no changed scenes"
        return report
    model_name = getattr(getattr(provider, "cfg", None), "model", "")

    def on_call(done, ok, error):
        if db is not None:
            db.record_llm_call("script_breakdown", provider.name, done.model or model_name, done.usage, ok, error)

    try:
        result = call_tool(provider, SYSTEM, build_prompt(bd, indices), TOOL,
                           "Submit the breakdown additions for the scenes given.", BreakdownReply,
                           check=make_check(bd, indices), on_call=on_call)
    except StructuredOutputError as exc:
        report.update(status=f"rejected: {exc}", errors=exc.errors)
        return report
    reply: BreakdownReply = result.value
    by_number = {s.number: s for s in bd.scenes}
    existing = {(t.category, t.label, t.scene) for t in bd.tags}
    for el in reply.elements:
        scene = by_number[el.scene]
        start = bd.text.index(el.quote, scene.start, scene.end)
        key = (el.category, el.label.upper(), scene.index)
        if key in existing:
            continue
        existing.add(key)
        bd.tags.append(Tag(el.category, el.label.upper(), start, start + len(el.quote), scene.index, source="llm",
                           status="proposed", implied=el.implied, note=el.reason))
        report["accepted_proposals"] += 1
    for al in reply.aliases:
        if not any({a.alias, a.canonical} == {al.alias.upper(), al.canonical.upper()} for a in bd.aliases):
            bd.aliases.append(AliasProposal(al.canonical.upper(), al.alias.upper(), f"llm: {al.reason}", []))
    for note in reply.scenes:
        scene = by_number[note.scene]
        scene.synopsis = note.synopsis
        if note.script_day is not None:  # a proposal with its evidence, like any element (FDX "Script Day")
            start = bd.text.index(note.day_quote, scene.start, scene.end)
            bd.tags.append(Tag("script_day", f"DAY {note.script_day}", start, start + len(note.day_quote),
                               scene.index, source="llm", status="proposed", implied=True))
            report["accepted_proposals"] += 1
    bd.tags.sort(key=lambda t: (t.scene, t.start))
    report.update(usage=result.usage, errors=result.errors, attempts=result.attempts)
    return report
