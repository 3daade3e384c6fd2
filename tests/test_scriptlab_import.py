"""Script Lab import: Fountain with both parsers, FDX (styled runs, dual dialogue, tags), plain text."""
import os

import pytest

from vibeboard.scriptlab import importers, pipeline
from vibeboard.scriptlab.screenplay import CENTERED, CHARACTER, DIALOGUE, HEADING, TRANSITION

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLE = pipeline.sample_path()
FDX = os.path.join(HERE, "data", "scriptlab", "edge_cases.fdx")
HEADINGS = ["EXT. HARBOUR ROAD--DAY", "INT. LIGHTHOUSE - LAMP ROOM - NIGHT", "BACK AT THE QUAY",
            "EXT. LIGHTHOUSE GALLERY -- CONTINUOUS"]


@pytest.mark.parametrize("parser", importers.PARSERS)
def test_fountain_edge_cases_parse_the_same_with_both_parsers(parser):
    play = importers.load_script(SAMPLE, parser=parser)
    heads = [e for e in play.elements if e.kind == HEADING]
    assert [h.text for h in heads] == HEADINGS
    assert heads[2].forced  # ".BACK AT THE QUAY"
    cues = [(e.name, e.extension) for e in play.elements if e.kind == CHARACTER]
    assert ("OLD TOMAS", "O.S.") in cues and ("MARA", "V.O.") in cues
    assert {n for n, _ in cues} == {"MARA", "OLD TOMAS", "TOMAS", "CAPTAIN TOMAS"}
    duals = [(e.name, e.dual) for e in play.elements if e.kind == CHARACTER and e.dual]
    assert duals == [("TOMAS", "left"), ("MARA", "right")]
    assert [e.dual for e in play.elements if e.kind == DIALOGUE and e.dual] == ["left", "right"]
    transitions = [e.text for e in play.elements if e.kind == TRANSITION]
    assert "CUT TO:" in transitions and "SMASH CUT TO:" in transitions
    assert [e.text for e in play.elements if e.kind == CENTERED] == ["THE END?"]
    # multi-line title page value
    assert play.title["Contact"].split("\n")[-1].strip() == "sample script, public domain"
    # notes and boneyard are kept apart, never script text
    assert play.notes == ["Check whether the dog is a collie or a terrier."]
    assert any("THE LAST LAMP" in b for b in play.boneyards)
    for hidden in ("collie", "THE LAST LAMP", "A cut line nobody", "[[", "/*"):
        assert hidden not in play.text
    # every element's offsets point at its own text
    for e in play.elements:
        assert play.text[e.start:e.end] == e.text


def test_fountain_py_reads_fade_in_as_a_transition():
    play = importers.load_script(SAMPLE)
    assert play.elements[0].kind == TRANSITION and play.elements[0].text == "FADE IN:"
    assert play.elements[-1].kind == TRANSITION and play.elements[-1].text == "FADE OUT."


def test_fdx_reads_every_text_run_dual_dialogue_centered_and_tags():
    play = importers.load_script(FDX)
    assert play.source_format == "fdx"
    heads = [e for e in play.elements if e.kind == HEADING]
    assert heads[0].text == "INT. ENGINE ROOM -- NIGHT" and heads[0].scene_number == "7A"
    action = play.elements[1]
    assert action.text == "Steam everywhere. JUNO grips a WRENCH."  # all runs, not just the first
    (tag,) = action.tags
    assert tag["category"] == "props" and tag["label"] == "Wrench"
    assert play.text[tag["start"]:tag["end"]] == "WRENCH"
    cue = play.elements[2]
    assert (cue.name, cue.extension) == ("JUNO", "CONT'D")
    assert [(e.name, e.dual) for e in play.elements if e.kind == CHARACTER and e.dual] == [("PIKE", "left"),
                                                                                       ("JUNO", "right")]
    assert [e.text for e in play.elements if e.kind == CENTERED] == ["INTERMISSION"]
    assert play.title["Title"] == "STEAM"


def test_fdx_with_entity_declarations_is_refused(tmp_path):
    bad = tmp_path / "bomb.fdx"
    bad.write_text('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><FinalDraft>&a;</FinalDraft>')
    with pytest.raises(ValueError, match="DOCTYPE"):
        importers.load_script(str(bad))
    broken = tmp_path / "broken.fdx"
    broken.write_text("<FinalDraft><Content>")
    with pytest.raises(ValueError, match="not a valid FDX"):
        importers.load_script(str(broken))


def test_plain_text_screenplay_with_indentation(tmp_path):
    path = tmp_path / "script.txt"
    path.write_text("INT. KITCHEN - MORNING\n\nAda pours COFFEE.\n\n                    ADA\n"
                    "          Morning already?\n")
    play = importers.load_script(str(path))
    assert play.source_format == "text"
    assert [e.kind for e in play.elements] == [HEADING, "action", CHARACTER, DIALOGUE]
    assert play.elements[2].name == "ADA"
