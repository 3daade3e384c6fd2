"""workflows/vfx_suite(.api).json: the UI file converts to the API twin and the twin runs headless."""
import json
import os

from workflow_helpers import muted_types, run_saved_workflow


def test_vfx_suite_runs_headless_without_weights(tmp_path):
    res, ui = run_saved_workflow("vfx_suite", tmp_path)
    assert {"VBChangeCamera", "VBFixFocus", "VBQwenEdit"} <= muted_types(ui)  # weight-needing nodes ship muted
    files = {f["node"]: f for f in res.output_files()}
    assert set(files) >= {"5", "6", "8", "9"}
    assert files["5"]["filename"].endswith(".mp4") and os.path.getsize(files["5"]["path"]) > 0
    assert len(open(files["6"]["path"]).read().strip().splitlines()) == 34  # header + 33 poses
    report = json.load(open(files["9"]["path"]))
    assert report["shot"] == "vfx_sample" and report["frames"] == 1
