"""The asset DB: migrations, revisions that re-tag only changed scenes and keep user edits, exports, FDX round trip."""
import csv
import io
import sqlite3

import pytest

from vibeboard.assetdb import SCHEMA_VERSION, AssetDB, AssetDBError
from vibeboard.scriptlab import categories, exports, importers, pipeline


def _import(tmp_path, text=None, db="p.vbdb"):
    path = tmp_path / "script.fountain"
    path.write_text(text if text is not None else open(pipeline.sample_path()).read())
    return pipeline.run_breakdown(str(path), str(tmp_path / db))


def test_schema_is_migrated_once_and_newer_schemas_are_refused(tmp_path):
    path = str(tmp_path / "a.vbdb")
    with AssetDB(path) as db:
        assert db.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    with AssetDB(path) as db:  # reopening applies nothing twice
        assert db.migrate() == SCHEMA_VERSION
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.commit()
    con.close()
    with pytest.raises(AssetDBError, match="newer"):
        AssetDB(path)


def test_readers_see_characters_locations_elements_and_evidence(tmp_path):
    _import(tmp_path)
    with AssetDB(str(tmp_path / "p.vbdb")) as db:
        text = db.script_text()
        for t in db.tags(status=None):
            assert text[t["start"]:t["end"]] == t["evidence"]
        mara = next(c for c in db.characters() if c["name"] == "MARA")
        assert mara["speaking"] and mara["scenes"] == ["1", "2", "4"]
        assert [loc["name"] for loc in db.locations()][0] == "BACK AT THE QUAY"
        assert {"category": "props", "label": "COMPASS", "scenes": ["1", "4"]} in db.elements()


def test_accepting_an_alias_merges_the_character_for_readers(tmp_path):
    _import(tmp_path)
    with AssetDB(str(tmp_path / "p.vbdb")) as db:
        prop = next(a for a in db.alias_proposals() if a["alias"] == "CAPTAIN TOMAS")
        db.set_alias_status(prop["id"], "accepted")
        tomas = next(c for c in db.characters() if c["name"] == "TOMAS")
        assert "CAPTAIN TOMAS" in tomas["aliases"] and tomas["scenes"] == ["2", "4"]
        assert "CAPTAIN TOMAS" not in [c["name"] for c in db.characters()]


def test_a_revision_retags_only_the_changed_scene_and_keeps_user_edits(tmp_path):
    original = open(pipeline.sample_path()).read()
    _import(tmp_path, original)
    db_path = str(tmp_path / "p.vbdb")
    with AssetDB(db_path) as db:
        lamp = next(t for t in db.tags(scene_idx=1) if t["label"] == "OIL LAMP")
        van = next(t for t in db.tags(scene_idx=0) if t["label"] == "VAN")
        db.rename_tag(van["id"], "RUSTY FORD TRANSIT")          # user edit in scene 1
        net = next(t for t in db.tags(scene_idx=2) if t["label"] == "NET")
        db.set_tag_status(net["id"], "rejected")                 # user edit in scene 3
        text = db.script_text()
        start = text.index("silver fish")
        db.add_user_tag(2, "props", "SILVER FISH", start, start + len("silver fish"))
        old_lamp_start = lamp["start"]
    # edit one line of scene 2: the oil lamp becomes a storm lantern, a parrot appears
    edited = original.replace("Mara lights an OIL LAMP.", "Mara lights a STORM LANTERN. A PARROT squawks.")
    result = _import(tmp_path, edited)
    assert result["number"] == 2
    changes = result["changes"]
    assert {k: changes[k] for k in ("unchanged", "changed", "added", "removed")} == {
        "unchanged": ["1", "3", "4"], "changed": ["2"], "added": [], "removed": []}
    assert changes["tags"] == {"2": {"added": ["animals: PARROT", "props: STORM LANTERN"],
                                     "removed": ["props: OIL LAMP"]}}
    with AssetDB(db_path) as db:
        scenes = db.scenes()
        assert [s["retagged"] for s in scenes] == [0, 1, 0, 0]
        labels2 = {t["label"] for t in db.tags(scene_idx=1)}
        assert "STORM LANTERN" in labels2 and "PARROT" in labels2 and "OIL LAMP" not in labels2
        s1 = {t["label"] for t in db.tags(scene_idx=0)}
        assert "RUSTY FORD TRANSIT" in s1 and "VAN" not in s1
        s3 = db.tags(scene_idx=2, status=None)
        assert next(t for t in s3 if t["original_label"] == "" and t["label"] == "NET")["status"] == "rejected"
        fish = next(t for t in s3 if t["label"] == "SILVER FISH")
        assert fish["source"] == "user" and fish["evidence"] == "silver fish"  # shifted to the new offsets
        text = db.script_text()
        for t in db.tags(status=None):
            assert text[t["start"]:t["end"]] == t["evidence"]
        assert old_lamp_start  # (scene 2 moved nothing before it; scenes after it shifted and still match)


def test_fdx_round_trip_keeps_tags_and_category_guids(tmp_path):
    res = _import(tmp_path)
    with AssetDB(str(tmp_path / "p.vbdb")) as db:
        tags = db.tags(res["revision_id"])
        fdx = exports.to_fdx(res["screenplay"], tags)
    assert 'Id="01fc9642-84ff-4366-b37c-a3068dee57e8" Name="Cast Members"' in fdx
    assert 'Id="05c556eb-6bc1-4a3a-b09f-f8b5ba1b6afa" Name="Props"' in fdx
    path = tmp_path / "tagged.fdx"
    path.write_text(fdx)
    again = importers.load_script(str(path))
    assert again.text == res["screenplay"].text
    back = sorted((t["category"], t["label"], t["start"], t["end"]) for e in again.elements for t in e.tags)
    want = sorted((t["category"], t["label"], t["start"], t["end"]) for t in tags)
    assert back == want and len(back) > 20
    assert [(e.name, e.dual) for e in again.elements if e.dual and e.kind == "character"] == [("TOMAS", "left"),
                                                                                          ("MARA", "right")]
    assert "<DualDialogue>" in fdx
    assert categories.BY_KEY["cast"].guid == "01fc9642-84ff-4366-b37c-a3068dee57e8"


def test_csv_xlsx_and_shot_list_exports(tmp_path):
    _import(tmp_path)
    with AssetDB(str(tmp_path / "p.vbdb")) as db:
        rows = list(csv.DictReader(io.StringIO(exports.to_csv(db))))
        assert [r["scene"] for r in rows] == ["1", "2", "3", "4"]
        assert rows[1]["pages"] == "2/8" and "OIL LAMP" in rows[1]["props"] and rows[1]["sound"] == "THUNDER"
        from openpyxl import load_workbook
        exports.to_xlsx(db, str(tmp_path / "b.xlsx"))
        ws = load_workbook(str(tmp_path / "b.xlsx"))["Breakdown"]
        assert ws.cell(1, 1).value == "scene" and ws.max_row == 5
        db.add_shot(1, "2B", "Close on the lamp", workflow="optics_engine")
        shots = exports.shot_list(db)
        assert [s["shot"] for s in shots] == ["1A", "2B", "3A", "4A"]
        assert shots[1]["workflow"] == "optics_engine" and "MARA" in shots[1]["cast"]
