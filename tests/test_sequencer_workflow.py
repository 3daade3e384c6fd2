"""workflows/sequencer(.api).json and workflows/dailies(.api).json: the UI files convert to their API twins and
the twins run headless with no weights, producing the cut, its interchange files, captions and the review."""
import json
import os

import pytest

pytest.importorskip("opentimelineio")

from workflow_helpers import run_saved_workflow  # noqa: E402


def run(name, tmp_path):
    return run_saved_workflow(name, tmp_path)[0]


def test_sequencer_workflow_runs_headless(tmp_path):
    import opentimelineio as otio
    from vibeboard.media import video as video_io
    res = run("sequencer", tmp_path)
    files = {}
    for f in res.output_files():
        files.setdefault(f["node"], []).append(f["path"])
    cut = otio.adapters.read_from_file(files["10"][0])
    assert [c.name for c in cut.find_clips()][:3] == ["sh010", "sh020", "sh030"]
    assert "<samplecharacteristics>" in open(files["11"][0]).read()
    assert "01:00:00:00" in open(files["12"][0]).read()
    assert video_io.probe_video(files["13"][0]).frame_count == 72
    assert {os.path.splitext(p)[1] for p in files["15"]} == {".srt", ".vtt", ".ttml"}
    delivered = {os.path.basename(p) for p in files["16"]}
    assert {"loudness_report.json", "Sequencer_demo.mp4", "Sequencer_demo_captioned.mp4", "Sequencer_demo.otio",
            "Sequencer_demo.srt"} <= delivered
    report = json.load(open(files["14"][0]))
    assert report["passes"] and abs(report["after"]["integrated_lufs"] + 23.0) <= 0.1


def test_dailies_workflow_runs_headless(tmp_path):
    from vibeboard.dailies.store import DailiesStore
    res = run("dailies", tmp_path)
    store = DailiesStore(str(tmp_path / "out" / "vibeboard" / "dailies" / "demo.sqlite"))
    stack = store.stack("sh010")
    assert [(v["label"], v["status"], v["parent_id"]) for v in stack] == [
        ("v003", "approved", "sh010_v002"), ("v002", "in_review", "sh010_v001"), ("v001", "in_review", None)]
    human = [n for n in store.notes(shot="sh010") if n["kind"] == "human"]
    assert [(n["text"], n["status"], n["resolved_by"]) for n in human] == [
        ("make the shirt red", "resolved", "sh010_v003")]
    assert store.latest_approved("sh010")["version_id"] == "sh010_v003"
    exported = {os.path.splitext(f["path"])[1] for f in res.output_files()}
    assert {".otio", ".csv", ".edl", ".mp4", ".html"} <= exported
    focus = [f for f in res.output_files() if f["filename"].startswith("focus_sh010")]
    assert len(focus) == 3 and json.load(open(focus[0]["path"]))["shot"] == "sh010"  # one per new version
