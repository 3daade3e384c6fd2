"""Review fixes in the CLI: a crashing executor or an error without details still gives a readable exit."""
import json
import types

from vibeboard_runner import cli
from vibeboard_runner.executor import Executor


def test_run_reports_an_executor_crash_instead_of_a_keyerror(tmp_path, monkeypatch, capsys):
    workflow = {"1": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
                "2": {"class_type": "LoadImage", "inputs": {"image": "x.png"}}}
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(workflow))

    def crash(self, *args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Executor, "execute", crash)
    code = cli.main(["run", str(path), "--quiet", "--output-dir", str(tmp_path / "o"),
                     "--input-dir", str(tmp_path / "i"), "--temp-dir", str(tmp_path / "t")])
    assert code == cli.EXIT_FAILED
    assert "disk on fire" in capsys.readouterr().err


def test_report_error_without_details(capsys):
    # A remote ComfyUI history can say status_str "error" without an execution_error message.
    result = types.SimpleNamespace(status="error", error=None, prompt={}, prompt_id="p", outputs={}, timings={},
                                   executed=[], cached=[], total_seconds=0.0, output_files=lambda: [])
    assert cli.report(result, None, False) == cli.EXIT_FAILED
    assert "Failed" in capsys.readouterr().err


def test_report_output_on_another_drive(monkeypatch, capsys):
    # Windows: os.path.relpath raises ValueError for a path on another drive (--output-dir D:\renders).
    def relpath(path, start=None):
        raise ValueError("path is on mount 'D:', start on mount 'C:'")

    monkeypatch.setattr(cli.os.path, "relpath", relpath)
    files = [{"path": "/renders/out.png", "node": "9", "type": "output"}]
    result = types.SimpleNamespace(status="success", error=None, prompt={}, prompt_id="p", outputs={},
                                   timings={}, executed=[], cached=[], total_seconds=0.0,
                                   output_files=lambda: files)
    assert cli.report(result, None, False) == cli.EXIT_OK
    assert "output: /renders/out.png" in capsys.readouterr().out
