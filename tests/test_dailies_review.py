"""Dailies: version stacks with provenance and status; an annotation on frames 40–48 of v001 survives a restart
and an OTIO round trip; notes export to CSV and a marker EDL a CMX parser reads at 24 and 23.976 fps; a note
becomes a re-render whose result is v003 (parent v002, linked to the note), the note resolves only when v003 is
approved, and approving v003 makes the next assembly use it and change nothing else."""
import csv
import io
import json

import pytest

otio = pytest.importorskip("opentimelineio")

from sequencer_media import write_clip  # noqa: E402
from vibeboard.dailies import rerender, review_export  # noqa: E402
from vibeboard.dailies.store import DailiesError, DailiesStore  # noqa: E402
from vibeboard.sequencer import assembly, timeline as tl  # noqa: E402

BOX = {"type": "rectangle", "points": [[0.1234567, 0.25], [0.5, 0.7654321]], "rgba": [1.0, 0.2, 0.0, 1.0]}
ARROW = {"type": "arrow", "points": [[0.9, 0.1], [0.55, 0.45]]}


@pytest.fixture()
def project(tmp_path):
    store = DailiesStore(str(tmp_path / "dailies.sqlite"))
    media = {n: write_clip(tmp_path / f"{n}.mp4", 60, clip_id=i % 4) for i, n in enumerate(
        ["a1", "a2", "b1", "c1", "a3"])}
    return store, media


def test_versions_stack_with_provenance_and_status(project):
    store, media = project
    v1 = store.add_version("sh010", media["a1"], {"seed": 1, "prompt": "a red door"}, frames=60, fps=24)
    v2 = store.add_version("sh010", media["a2"], {"seed": 2}, parent_id=v1["id"], frames=60, fps=24)
    assert (v1["id"], v2["id"]) == ("sh010_v001", "sh010_v002")
    assert v2["parent_id"] == "sh010_v001" and v2["status"] == "in_review" and v1["recipe"]["prompt"] == "a red door"
    assert [v["label"] for v in store.stack("sh010")] == ["v002", "v001"]
    assert store.latest_approved("sh010") is None
    store.set_status(v1["id"], "approved")
    assert store.latest_approved("sh010")["version_id"] == "sh010_v001"
    with pytest.raises(DailiesError, match="status must be one of"):
        store.set_status(v2["id"], "great")
    with pytest.raises(DailiesError, match="parent version 'nope' does not exist"):
        store.add_version("sh010", media["a3"], parent_id="nope")


def test_annotation_survives_restart_and_otio_round_trip(project, tmp_path):
    store, media = project
    v1 = store.add_version("sh010", media["a1"], {"seed": 1}, frames=60, fps=24)
    store.add_version("sh010", media["a2"], {"seed": 2}, parent_id=v1["id"], frames=60, fps=24)
    note = store.add_note(v1["id"], "make the shirt red", 40, 48)
    store.add_annotation(v1["id"], BOX, 40, 48, note["id"])
    store.add_annotation(v1["id"], ARROW, 40, 48, note["id"])
    del store
    reopened = DailiesStore(str(tmp_path / "dailies.sqlite"))  # a restart: a new process opens the same file
    saved = reopened.annotations(version_id="sh010_v001")
    assert [(a["start_frame"], a["end_frame"], a["shape"]["type"]) for a in saved] == [
        (40, 48, "rectangle"), (40, 48, "arrow")]
    path = str(tmp_path / "notes.otio")
    otio.adapters.write_to_file(review_export.shot_timeline(reopened, "sh010"), path)
    back = review_export.import_annotations(path)
    assert len(back) == 2
    for original, loaded in zip(saved, back):
        assert loaded["version_id"] == "sh010_v001" and (loaded["start_frame"], loaded["end_frame"]) == (40, 48)
        for p, q in zip(original["shape"]["points"], loaded["shape"]["points"]):
            assert abs(p[0] - q[0]) <= 1e-6 and abs(p[1] - q[1]) <= 1e-6
    # the OpenRV fields: Annotation.1 effect, Paint.1 layer with layer_range = frames 40..48 of the clip
    data = json.load(open(path))
    clip = data["tracks"]["children"][0]["children"][0]
    effect = clip["effects"][0]
    assert effect["OTIO_SCHEMA"] == "Annotation.1"
    paint = effect["layers"][0]
    assert paint["OTIO_SCHEMA"] == "Paint.1" and {"points", "rgba", "type", "brush", "layer_range", "visible"} <= set(paint)
    assert (paint["layer_range"]["start_time"]["value"], paint["layer_range"]["duration"]["value"]) == (40, 9)
    assert paint["points"][0]["OTIO_SCHEMA"] == "Point.1"
    assert clip["markers"][0]["name"] == "make the shirt red"


def test_bad_annotations_and_ranges_are_refused(project):
    store, media = project
    v1 = store.add_version("sh010", media["a1"], frames=60, fps=24)
    with pytest.raises(DailiesError, match="0 <= x, y <= 1"):
        store.add_annotation(v1["id"], {"type": "rectangle", "points": [[0.1, 0.1], [1.5, 0.2]]}, 0, 1)
    with pytest.raises(DailiesError, match="past the end"):
        store.add_note(v1["id"], "late", 55, 70)
    with pytest.raises(DailiesError, match="needs text"):
        store.add_note(v1["id"], "  ", 1, 2)


@pytest.mark.parametrize("fps,expected", [(24.0, ["00:00:00:10", "00:00:01:16", "00:00:02:00"]),
                                          (23.976, ["00:00:00:10", "00:00:01:16", "00:00:02:00"])])
def test_marker_edl_opens_in_a_cmx_parser(project, fps, expected):
    pycmx = pytest.importorskip("pycmx")
    store, media = project
    v1 = store.add_version("sh010", media["a1"], frames=60, fps=fps)
    for start, text in ((10, "too dark"), (40, "shirt colour"), (48, "cut here")):
        store.add_note(v1["id"], text, start, min(start + 3, 59))
    edl = pycmx.parse_cmx3600(io.StringIO(review_export.marker_edl(store, "sh010", fps)))
    events = list(edl.events)
    assert [e.edits[0].source_in for e in events] == expected
    assert [e.edits[0].record_in for e in events] == expected
    text = review_export.marker_edl(store, "sh010", fps)
    assert "|C:ResolveColorRed |M:shirt colour |D:4" in text
    rows = list(csv.DictReader(io.StringIO(review_export.notes_csv(store, "sh010", fps))))
    assert [(r["start_frame"], r["text"], r["status"]) for r in rows] == [
        ("10", "too dark", "open"), ("40", "shirt colour", "open"), ("48", "cut here", "open")]


def test_note_becomes_v003_and_resolves_only_on_approval_which_drives_assembly(project):
    store, media = project
    a1 = store.add_version("sh010", media["a1"], {"seed": 1, "prompt": "hero at the door", "handles": 6},
                           frames=60, fps=24)
    a2 = store.add_version("sh010", media["a2"], {"seed": 2, "prompt": "hero at the door", "handles": 6},
                           parent_id=a1["id"], frames=60, fps=24)
    b1 = store.add_version("sh020", media["b1"], {"seed": 5, "handles": 6}, frames=60, fps=24)
    c1 = store.add_version("sh030", media["c1"], {"seed": 9, "handles": 6}, frames=60, fps=24)
    for version in (a2, b1, c1):
        store.set_status(version["id"], "approved")
    order = {"fps": 24, "width": 64, "height": 48,
             "shots": [{"shot": "sh010", "scene": "1"}, {"shot": "sh020", "scene": "1", "dissolve_in": 12},
                       {"shot": "sh030", "scene": "2"}]}
    before = tl.summary(assembly.assemble(order, store.latest_approved))

    note = store.add_note(a2["id"], "make the shirt red", 40, 48)
    store.add_annotation(a2["id"], BOX, 40, 48, note["id"])
    proposal = rerender.propose(store, note["id"])
    request = proposal["request"]
    assert request["route"] == "qwen_edit" and request["changes"]["frame_range"] == [40, 48]
    assert request["changes"]["mask_box"] == [BOX["points"][0][0], 0.25, 0.5, BOX["points"][1][1]]
    assert request["recipe"]["parent"] == "sh010_v002" and request["recipe"]["prompt"] == "hero at the door"
    v3 = store.land_rerender(proposal["id"], media["a3"], frames=60, fps=24)
    assert v3["id"] == "sh010_v003" and v3["parent_id"] == "sh010_v002" and v3["from_note"] == note["id"]
    assert store.note(note["id"])["status"] == "open"  # landing is not approving
    assert tl.summary(assembly.assemble(order, store.latest_approved)) == before  # v003 not approved yet

    store.set_status(v3["id"], "approved")
    assert store.note(note["id"])["status"] == "resolved" and store.note(note["id"])["resolved_by"] == "sh010_v003"
    after = tl.summary(assembly.assemble(order, store.latest_approved))
    changed = [(b, a) for b, a in zip(before["tracks"][0]["clips"], after["tracks"][0]["clips"]) if a != b]
    assert len(changed) == 1 and changed[0][1]["recipe"]["version_id"] == "sh010_v003"
    assert changed[0][1]["record"] == changed[0][0]["record"]  # same cut points
    assert after["tracks"][0]["transitions"] == before["tracks"][0]["transitions"]
    assert {k: v for k, v in after.items() if k != "tracks"} == {k: v for k, v in before.items() if k != "tracks"}


def test_rerender_routes_camera_notes_to_infcam_and_plain_notes_to_a_new_seed(project):
    store, media = project
    v1 = store.add_version("sh010", media["a1"], {"seed": 41, "prompt": "a quiet street"}, frames=60, fps=24)
    camera = store.add_note(v1["id"], "slow pan left instead", 0, 59)
    plain = store.add_note(v1["id"], "more rain", 0, 59)
    assert rerender.propose(store, camera["id"])["request"]["route"] == "infcam"
    regen = rerender.propose(store, plain["id"])["request"]
    assert regen["route"] == "regenerate" and regen["recipe"]["seed"] == 42
    assert regen["recipe"]["prompt"] == "a quiet street. more rain"
    mask = rerender.region_mask([0.25, 0.5, 0.75, 1.0], 60, 48, 64, 40, 48)
    assert mask.shape == (60, 48, 64) and mask[39].sum() == 0 and mask[44, 24:48, 16:48].min() == 1.0
    assert mask[44].sum() == 24 * 32


def test_two_processes_adding_versions_never_collide(tmp_path):
    import multiprocessing
    path = str(tmp_path / "d.sqlite")
    DailiesStore(path)
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_add_versions, args=(path, i)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    numbers = sorted(v["number"] for v in DailiesStore(path).stack("sh010"))
    assert numbers == list(range(1, 11))


def _add_versions(path, worker):
    store = DailiesStore(path)
    for i in range(5):
        store.add_version("sh010", f"/tmp/take_{worker}_{i}.mp4", {"worker": worker})


def test_assembly_keeps_the_given_order_and_refuses_repeated_shots(project):
    store, media = project
    order = {"shots": [{"shot": "b", "path": media["b1"]}, {"shot": "a", "path": media["a1"]}]}
    assert [c.name for c in assembly.assemble(order).find_clips()] == ["b", "a"]
    with pytest.raises(assembly.AssemblyError, match="more than once: a"):
        assembly.assemble({"shots": [{"shot": "a", "path": media["a1"]}, {"shot": "a", "path": media["a2"]}]})
    try:
        import vibeboard.scriptlab.exports  # noqa: F401
    except ImportError:
        with pytest.raises(assembly.AssemblyError, match="Script Lab is not available"):
            assembly.shot_order_from_scriptlab(None)


def test_scriptlab_shot_list_becomes_the_shot_order(monkeypatch):
    import sys
    import types
    rows = [{"scene": "1", "shot": "1A", "description": "Master: INT. PIER - NIGHT", "workflow": "shot_studio",
             "cast": ["MAYA"], "location": "PIER", "day_night": "NIGHT"},
            {"scene": "2", "shot": "2B", "description": "close on the phone", "workflow": "shot_studio"}]
    exports = types.ModuleType("vibeboard.scriptlab.exports")
    exports.shot_list = lambda db, revision_id=None: rows if db == "db" and revision_id == 3 else []
    package = types.ModuleType("vibeboard.scriptlab")
    package.exports = exports
    monkeypatch.setitem(sys.modules, "vibeboard.scriptlab", package)
    monkeypatch.setitem(sys.modules, "vibeboard.scriptlab.exports", exports)
    order = assembly.shot_order_from_scriptlab("db", 3, fps=24, width=832, height=480)
    assert order["fps"] == 24 and [(s["scene"], s["shot"]) for s in order["shots"]] == [("1", "1A"), ("2", "2B")]
