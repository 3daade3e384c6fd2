"""workflows/stagecraft(.api).json: the UI file converts to the API twin and runs headless with no weights on
the shipped blocking document."""
import json

from workflow_helpers import muted_types, run_saved_workflow


def test_stagecraft_runs_headless_without_weights(tmp_path):
    from vibeboard.media.video import probe_video

    res, ui = run_saved_workflow("stagecraft", tmp_path)
    files = {f["node"]: f for f in res.output_files()}
    assert probe_video(files["4"]["path"]).frame_count == 48
    assert json.load(open(files["3"]["path"]))["ok"] is True
    assert files["2"]["filename"].endswith(".svg")
    assert json.load(open(files["5"]["path"]))["width"] == 320
    assert len([f for f in res.output_files() if f["node"] == "8"]) == 12  # CustomX scene video, shot 2
    assert muted_types(ui) == {"VBUnrealApplyBeat", "VBNitroGenActions"}
