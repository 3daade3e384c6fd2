"""Sequencer and Dailies nodes: bad input gives a clear error naming the node and the input (never a traceback),
paths stay confined, and nothing already written is lost."""
import json
import os

import pytest

pytest.importorskip("opentimelineio")

from sequencer_media import write_clip  # noqa: E402
from vibeboard.common import runtime  # noqa: E402
from vibeboard.common.runtime import NodeInputError  # noqa: E402
from vibeboard.dailies import nodes as dn  # noqa: E402
from vibeboard.sequencer import nodes as sn  # noqa: E402


@pytest.fixture()
def dirs(tmp_path):
    saved = dict(runtime._dirs)
    runtime.set_host_dirs(output=str(tmp_path / "out"), input=str(tmp_path / "in"), temp=str(tmp_path / "tmp"),
                          models=str(tmp_path / "models"))
    os.makedirs(tmp_path / "out", exist_ok=True)
    yield tmp_path
    runtime._dirs.clear()
    runtime._dirs.update(saved)


def _cut(tmp_path, source_in=6):
    clips = [write_clip(tmp_path / "out" / f"c{i}.mp4", 48, clip_id=i) for i in range(2)]
    (timeline,) = sn.VBTimelineNew().new("cut", 24.0, 64, 48, "01:00:00:00")
    (timeline,) = sn.VBTimelineAddClip().add(timeline, "c0.mp4", "a", "V1", source_in, 24, 0, "{}")
    (timeline,) = sn.VBTimelineAddClip().add(timeline, clips[1], "b", "V1", source_in, 24, 12, '{"seed": 3}')
    return timeline


def test_add_clip_errors_name_the_node_and_input(dirs):
    (timeline,) = sn.VBTimelineNew().new("cut", 24.0, 64, 48, "01:00:00:00")
    with pytest.raises(NodeInputError, match=r"Timeline Add Clip \(VibeBoard\): input 'media_path': file not found"):
        sn.VBTimelineAddClip().add(timeline, "missing.mp4", "a", "V1", 0, 0, 0, "{}")
    write_clip(dirs / "out" / "c.mp4", 10)
    with pytest.raises(NodeInputError, match="input 'recipe': not valid JSON"):
        sn.VBTimelineAddClip().add(timeline, "c.mp4", "a", "V1", 0, 0, 0, "{seed: 1")
    with pytest.raises(NodeInputError, match="input 'duration'.*only 10 frames"):
        sn.VBTimelineAddClip().add(timeline, "c.mp4", "a", "V1", 5, 8, 0, "{}")
    with pytest.raises(NodeInputError, match="input 'dissolve_frames'.*needs a clip before it"):
        sn.VBTimelineAddClip().add(timeline, "c.mp4", "a", "V1", 0, 0, 4, "{}")
    with pytest.raises(NodeInputError, match="input 'start_timecode'"):
        sn.VBTimelineNew().new("cut", 24.0, 64, 48, "one hour")


def test_adding_clips_never_changes_the_input_timeline(dirs):
    timeline = _cut(dirs)
    before = json.dumps(sn._otio("t")["timeline"].summary(timeline))
    sn.VBTimelineAudio().set(timeline, "A2 Music", -6.0, "A1 Dialogue", 12.0)
    sn.VBTimelineAddClip().add(timeline, "c0.mp4", "c", "V1", 0, 10, 0, "{}")
    assert json.dumps(sn._otio("t")["timeline"].summary(timeline)) == before


def test_edl_export_refusal_is_clear_and_leaves_no_file(dirs):
    timeline = _cut(dirs, source_in=0)
    with pytest.raises(NodeInputError, match=r"Timeline Export \(VibeBoard\): input 'format': EDL export refused"):
        sn.VBTimelineExport().export(timeline, "edl", "vibeboard/sequencer/cut")
    assert not [n for n in os.listdir(dirs / "out" / "vibeboard" / "sequencer") if n.endswith(".edl")]
    with pytest.raises(NodeInputError, match="input 'timeline'.*handle frames"):
        sn.VBRenderCut().render(timeline, "vibeboard/sequencer/cut", 19, "veryfast")


def test_paths_stay_inside_the_server_folders(dirs, tmp_path_factory):
    outside = write_clip(tmp_path_factory.mktemp("elsewhere") / "x.mp4", 4)
    (timeline,) = sn.VBTimelineNew().new("cut", 24.0, 64, 48, "00:00:00:00")
    with runtime.path_policy(True):  # as on a server (per call, nothing process-wide)
        with pytest.raises(NodeInputError, match="input 'media_path'.*outside the folders"):
            sn.VBTimelineAddClip().add(timeline, outside, "a", "V1", 0, 0, 0, "{}")
        with pytest.raises(NodeInputError, match="input 'shot_order'.*outside the folders"):
            sn.VBAssembleCut().assemble(json.dumps({"shots": [{"shot": "a", "path": outside}]}), "")
    with pytest.raises(NodeInputError, match="input 'project'.*not a project name"):
        dn.VBDailiesSetStatus().set("../../etc", "x_v001", "approved")
    with pytest.raises(NodeInputError, match="filename_prefix.*outside the output folder"):
        sn.VBDeliverables().deliver(timeline, "ebu_r128", "", "../../escape")


def test_assembly_and_caption_inputs_are_checked(dirs):
    with pytest.raises(NodeInputError, match=r"Assemble Cut \(VibeBoard\): input 'shot_order': .*non-empty 'shots'"):
        sn.VBAssembleCut().assemble('{"shots": []}', "")
    with pytest.raises(NodeInputError, match="input 'shot_order': no approved version .* sh010"):
        sn.VBAssembleCut().assemble('{"shots": [{"shot": "sh010"}]}', "demo")
    with pytest.raises(NodeInputError, match="input 'dialogue': give '\\[start-end\\]' timestamps on every line"):
        sn.VBCaptions().caption("[0-1] hi\nthere", 24.0, "vibeboard/c")
    import torch
    silent = {"waveform": torch.zeros(1, 2, 48000), "sample_rate": 48000}
    with pytest.raises(NodeInputError, match=r"Loudness Normalize \(VibeBoard\): input 'audio': the audio is silent"):
        sn.VBLoudnessNormalize().normalize(silent, "ebu_r128", False)


def test_dailies_nodes_chain_and_report_bad_ids(dirs):
    clip = write_clip(dirs / "out" / "take.mp4", 30)
    result = dn.VBDailiesAddVersion().add("demo", "sh010", "take.mp4", '{"seed": 1}', "", False)
    vid = result["result"][0]
    assert vid == "sh010_v001"
    again = dn.VBDailiesAddVersion().add("demo", "sh010", clip, "{}", "", False)
    assert again["result"][0] == vid  # the same file is not a new version
    with pytest.raises(NodeInputError, match="input 'parent_version'.*does not exist"):
        write_clip(dirs / "out" / "take2.mp4", 30)
        dn.VBDailiesAddVersion().add("demo", "sh010", "take2.mp4", "{}", "sh010_v009", False)
    with pytest.raises(NodeInputError, match=r"Dailies Add Note \(VibeBoard\): input 'shapes'"):
        dn.VBDailiesAddNote().note("demo", vid, "red", 1, 2, '[{"type": "blob", "points": []}]')
    with pytest.raises(NodeInputError, match="input 'start_frame'.*past the end"):
        dn.VBDailiesAddNote().note("demo", vid, "red", 10, 40, "[]")
    (note_id,) = dn.VBDailiesAddNote().note("demo", vid, "red shirt", 1, 2, "[]")
    with pytest.raises(NodeInputError, match="input 'note_id': no note 99"):
        dn.VBDailiesNoteToRerender().propose("demo", 99)
    with pytest.raises(NodeInputError, match="input 'version_id': no version 'nope'"):
        dn.VBDailiesSetStatus().set("demo", "nope", "approved")
    out = dn.VBDailiesExportNotes().export("demo", "sh010", "csv", 24.0, "vibeboard/dailies/notes")
    assert "red shirt" in open(out["result"][0]).read() and note_id == 1
