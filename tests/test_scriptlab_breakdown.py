"""Deterministic breakdown (LLM off): scenes, D/N, eighths, cast, elements with verbatim evidence, aliases."""
from vibeboard.scriptlab import categories, importers, pipeline
from vibeboard.scriptlab.breakdown import build_breakdown, parse_heading


def _bd():
    play = importers.load_script(pipeline.sample_path())
    return play, build_breakdown(play)


def test_headings_with_dashes_and_forced_headings():
    assert parse_heading("EXT. HARBOUR ROAD--DAY") == ("EXT", "HARBOUR ROAD", "DAY")
    assert parse_heading("INT. LIGHTHOUSE - LAMP ROOM - NIGHT") == ("INT", "LIGHTHOUSE - LAMP ROOM", "NIGHT")
    assert parse_heading("EXT. LIGHTHOUSE GALLERY -- CONTINUOUS") == ("EXT", "LIGHTHOUSE GALLERY", "CONTINUOUS")
    assert parse_heading("INT./EXT. CAR - MOVING - DAY #4#") == ("INT/EXT", "CAR - MOVING", "DAY")
    assert parse_heading("BACK AT THE QUAY") == ("", "BACK AT THE QUAY", "")


def test_llm_off_gives_scenes_cast_locations_day_night_and_eighths():
    _, bd = _bd()
    rows = [(s.number, s.int_ext, s.set_name, s.day_night) for s in bd.scenes]
    assert rows == [("1", "EXT", "HARBOUR ROAD", "D"), ("2", "INT", "LIGHTHOUSE - LAMP ROOM", "N"),
                    ("3", "", "BACK AT THE QUAY", "N"), ("4", "EXT", "LIGHTHOUSE GALLERY", "N")]
    assert all(s.eighths >= 1 for s in bd.scenes)
    assert sum(s.eighths for s in bd.scenes) == 8  # the script is just over a page of 55 lines
    assert bd.scenes[1].speaking == ["TOMAS", "MARA"]
    locations = {t.label for t in bd.tags if t.category == "location"}
    assert locations == {"HARBOUR ROAD", "LIGHTHOUSE - LAMP ROOM", "BACK AT THE QUAY", "LIGHTHOUSE GALLERY"}
    assert {"MARA", "TOMAS", "OLD TOMAS", "CAPTAIN TOMAS", "MARA VOSS"} == set(bd.cast())


def test_every_tag_has_evidence_that_exists_verbatim_in_the_script():
    play, bd = _bd()
    assert bd.tags
    for t in bd.tags:
        evidence = play.text[t.start:t.end]
        assert evidence and evidence.upper() == t.label.upper() or t.category == "location", (t, evidence)
        assert bd.scenes[t.scene].start <= t.start < t.end <= bd.scenes[t.scene].end
        assert t.source == "parser" and t.category in categories.BY_KEY


def test_elements_land_in_their_categories():
    _, bd = _bd()
    got = {(t.category, t.label) for t in bd.tags}
    for expected in [("animals", "DOG"), ("animals", "GULLS"), ("vehicles", "VAN"), ("extras", "FISHERMEN"),
                     ("props", "OIL LAMP"), ("props", "WHISKEY"), ("sound", "THUNDER"), ("wardrobe", "COAT"),
                     ("props", "COMPASS")]:
        assert expected in got, expected
    speaking = {(t.scene, t.label): t.note for t in bd.tags if t.category == "cast"}
    assert speaking[(0, "MARA VOSS")] == "non-speaking" and speaking[(0, "MARA")] == "speaking"


def test_alias_proposals_cover_titles_and_first_names():
    _, bd = _bd()
    pairs = {(a.alias, a.canonical) for a in bd.aliases}
    assert pairs == {("CAPTAIN TOMAS", "TOMAS"), ("OLD TOMAS", "TOMAS"), ("MARA VOSS", "MARA")}
    assert all(a.status == "proposed" for a in bd.aliases)


def test_both_fountain_parsers_give_the_same_breakdown():
    results = []
    for parser in importers.PARSERS:
        bd = build_breakdown(importers.load_script(pipeline.sample_path(), parser=parser))
        results.append(sorted((t.scene, t.category, t.label) for t in bd.tags))
    assert results[0] == results[1]


def test_character_introductions_and_screenplay_vocabulary():
    play = importers.parse_script("INT. ROOM - DAY\n\nJUNO (20s) enters. FADE OUT. The DOCTOR waits. A RADIO plays.\n")
    got = [(t.category, t.label) for t in build_breakdown(play).tags if t.category != "location"]
    assert got == [("cast", "JUNO"), ("cast", "DOCTOR"), ("props", "RADIO")]


def test_a_script_without_scene_headings_is_one_scene():
    play = importers.parse_script("Ada pours COFFEE for the DOG.\n\nADA\nMorning already?\n")
    bd = build_breakdown(play)
    assert len(bd.scenes) == 1 and bd.scenes[0].heading == "" and bd.scenes[0].speaking == ["ADA"]
    assert {(t.category, t.label) for t in bd.tags} == {("cast", "ADA"), ("props", "COFFEE"), ("animals", "DOG")}
