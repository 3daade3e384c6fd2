"""Review fix: an output entry whose name climbs out of its folder is never pushed (storage, webhooks)."""
from vibeboard_runner.results import ExecutionResult
from vibeboard_runner.service import files_from_ui

OUTPUTS = {"7": {"files": [{"filename": "../../secret.txt", "subfolder": "", "type": "output"},
                           {"filename": "x.png", "subfolder": "../..", "type": "output"},
                           {"filename": "ok.png", "subfolder": "shots", "type": "output"}]}}


def test_service_skips_entries_outside_their_folder(tmp_path):
    dirs = {"output": str(tmp_path / "out"), "input": str(tmp_path / "in"), "temp": str(tmp_path / "t")}
    rows = files_from_ui(OUTPUTS, dirs)
    assert [r["filename"] for r in rows] == ["ok.png"]


def test_execution_result_skips_entries_outside_their_folder(tmp_path):
    result = ExecutionResult(prompt_id="p", prompt={}, dirs={"output": str(tmp_path / "out")}, outputs=OUTPUTS)
    assert [f["filename"] for f in result.output_files()] == ["ok.png"]
