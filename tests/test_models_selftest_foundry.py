"""`vibeboard selftest` covers the Wan-based research models too: FlashPortrait and the InfiniteTalk audio talking
head run end to end on tiny files written where `vibeboard models pull` puts them (the shapes are checked per
workflow in test_models_workflows.py; here the CLI's report)."""
import pytest

from vibeboard.models import selftest, vram


def test_selftest_lists_the_performance_models():
    names = set(selftest.workflows()) | set(selftest.missing_extras())
    assert {"flashportrait", "talking_head_infinitetalk"} <= names
    classes = {n["class_type"] for prompt, _, _ in selftest.workflows().values() for n in prompt.values()}
    assert "VBTalkingHead" in classes
    assert "VBFlashPortrait" in classes or "flashportrait" in selftest.missing_extras()


def test_selftest_cli_runs_the_talking_head(tmp_path, monkeypatch):
    from vibeboard.common import runtime
    from vibeboard_runner.cli_models import run_selftest
    monkeypatch.setattr(runtime, "_dirs", dict(runtime._dirs))   # the executor's folders are undone after
    monkeypatch.setenv("VIBEBOARD_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setattr(vram, "_DEFAULT", None, raising=False)
    lines = []
    try:
        report = run_selftest(str(tmp_path), only=["talking_head_infinitetalk", "flashportrait"], log=lines.append)
    finally:
        vram.set_manager(None)
    assert report["talking_head_infinitetalk"]["ok"], report["talking_head_infinitetalk"]["problems"]
    assert report["flashportrait"]["ok"], report["flashportrait"]["problems"]
    assert any(line.startswith("PASS talking_head_infinitetalk") for line in lines)

    class Result:  # the check can fail: one frame short is reported
        status, error = "success", None
        outputs = {"9": {"vibeboard_inspect": [{"kind": "IMAGE", "shape": [7, 32, 32, 3], "finite": True,
                                                "min": 0.0, "max": 1.0}]}}
    _, lat, img = selftest.workflows()["talking_head_infinitetalk"]
    assert lat is None and selftest.check(Result, lat, img) == ["IMAGE shape [7, 32, 32, 3] != [8, 32, 32, 3]"]
