"""Asset table (real SQLite): assets keyed to Script Lab elements, licence propagation, commercial export."""
import pytest

from vibeboard.assetbin.assetdb import AssetDB, LicenceError
from vibeboard.assetbin.licences import classify_text, most_restrictive


class FakeScriptLab:
    """Stands in for Script Lab's element table through the adapter surface."""

    def element(self, ref):
        return {"ref": ref, "kind": "prop", "name": "the red lamp"} if ref == "scriptlab:element:7" else None


@pytest.fixture
def db(tmp_path):
    d = AssetDB(str(tmp_path / "assets.sqlite"), str(tmp_path / "assets"), FakeScriptLab())
    yield d
    d.close()


def test_an_mvinverse_derived_asset_blocks_a_commercial_export(db, tmp_path):
    room = db.add_asset("living room", "scene", glb="room.glb", models=["depth (given)", "sam:sam-vit-huge"],
                        scale_m=1.0)
    lamp_maps = db.add_asset("lamp", "prop", glb="lamp.glb", maps={"albedo": "lamp_albedo.png"},
                             models=["mvinverse:maddog241/mvinverse"], parents=[room], tags=["prop", "lamp"],
                             element_ref="scriptlab:element:7", scale_m=0.6)
    child = db.add_asset("lamp variant", "prop", models=["qwen-image-edit"], parents=[lamp_maps])
    assert db.asset(room)["licence_class"] == "open"
    assert db.asset(lamp_maps)["licence_class"] == "non-commercial"
    assert db.asset(child)["licence_class"] == "non-commercial"  # inherited from its parent
    with pytest.raises(LicenceError) as err:
        db.check_export([room, lamp_maps, child], commercial=True)
    assert {a["id"] for a in err.value.assets} == {lamp_maps, child}
    assert "lamp" in str(err.value)
    assert db.check_export([room, lamp_maps], commercial=False)["assets"]  # fine for a non-commercial project
    assert db.check_export([room], commercial=True)["warnings"] == []


def test_assets_link_to_script_lab_elements_and_persist(db, tmp_path):
    aid = db.add_asset("lamp", "prop", glb="lamp.glb", element_ref="scriptlab:element:7", tags=["lamp"])
    db.close()
    again = AssetDB(str(tmp_path / "assets.sqlite"), str(tmp_path / "assets"), FakeScriptLab())
    found = again.find(element_ref="scriptlab:element:7")
    assert [a["id"] for a in found] == [aid]
    assert found[0]["element"]["name"] == "the red lamp" and found[0]["glb"] == "lamp.glb"
    again.close()


def test_asset_paths_stay_inside_the_asset_root(db):
    with pytest.raises(ValueError):
        db.add_asset("bad", "prop", glb="../../etc/passwd")
    with pytest.raises(ValueError):
        db.resolve("../outside.glb")


def test_motion_library_holds_camera_paths_and_blocking_moves(db):
    db.add_motion("dolly in", "camera_path", {"format": "vibeboard.camera_path", "frames": 3})
    db.add_motion("bob sits", "blocking_move", {"actor": "bob", "from": [0, 0], "to": [1, 0]})
    assert [m["name"] for m in db.motions("camera_path")] == ["dolly in"]
    with pytest.raises(ValueError, match="kind"):
        db.add_motion("x", "dance", {})


def test_licence_classes_from_text():
    assert classify_text("CC-BY-NC-4.0") == "non-commercial"
    assert classify_text("Apache-2.0") == "open"
    assert classify_text("") == "unknown"
    assert most_restrictive(["sam", "flux1-dev"])[0] == "non-commercial"


def test_script_lab_breakdown_elements_resolve_through_the_adapter(tmp_path):
    import shutil

    from vibeboard.assetbin.assetdb import ScriptLabElements
    from vibeboard.scriptlab import pipeline

    script = tmp_path / "script.fountain"
    shutil.copy(pipeline.sample_path(), script)
    pipeline.run_breakdown(str(script), str(tmp_path / "film.vbdb"))
    link = ScriptLabElements(str(tmp_path / "film.vbdb"))
    db = AssetDB(str(tmp_path / "assets.sqlite"), str(tmp_path / "assets"), link)
    todo = link.missing_assets(db)
    assert ScriptLabElements.ref("props", "COMPASS") in todo
    aid = db.add_asset("compass", "prop", glb="compass.glb", element_ref=ScriptLabElements.ref("props", "COMPASS"),
                       scale_m=0.08, models=["depth (given)"])
    element = db.asset(aid)["element"]
    assert element == {"ref": "scriptlab:props/COMPASS", "kind": "props", "name": "COMPASS", "scenes": ["1", "4"]}
    assert ScriptLabElements.ref("props", "COMPASS") not in link.missing_assets(db)
    assert link.element("scriptlab:props/UNICORN") is None and link.element("other:x") is None
    db.close()


def test_asset_register_node_checks_refs_against_the_script_lab_database(tmp_path):
    import json
    import shutil

    from vibeboard.assetbin.nodes import VBAssetRegister
    from vibeboard.common import runtime
    from vibeboard.common.runtime import NodeInputError
    from vibeboard.scriptlab import pipeline

    runtime.set_host_dirs(output=str(tmp_path / "out"), input=str(tmp_path / "in"), temp=str(tmp_path / "t"))
    (tmp_path / "in").mkdir()
    shutil.copy(pipeline.sample_path(), tmp_path / "in" / "s.fountain")
    pipeline.run_breakdown(str(tmp_path / "in" / "s.fountain"), str(tmp_path / "in" / "film.vbdb"))
    report = json.dumps({"glb": "compass_00001_.glb", "models": ["mvinverse:maddog241/mvinverse"]})
    with pytest.raises(NodeInputError, match="element_ref.*not an element"):
        VBAssetRegister().run(report, "compass", "prop", "scriptlab:props/UNICORN", "", False, "film.vbdb")
    out = VBAssetRegister().run(report, "compass", "prop", "scriptlab:props/COMPASS", "prop", False, "film.vbdb")
    asset = json.loads(out["result"][0])
    assert asset["element_ref"] == "scriptlab:props/COMPASS" and asset["licence_class"] == "non-commercial"
    with pytest.raises(NodeInputError, match="commercial_project.*not licensed"):
        VBAssetRegister().run(report, "compass", "prop", "scriptlab:props/COMPASS", "", True, "film.vbdb")
