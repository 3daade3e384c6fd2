"""workflows/managed_api(.api).json: validates, says it needs keys, fails cleanly without them, and runs end to
end headless against the loopback replay of fal.ai and xAI (FLUX → Kling i2v → Grok tags; pod-or-API)."""
import json
import os

from managed_api_replay import ReplayServer, ledger_rows, load_cassette, tiny_mp4, tiny_png

from vibeboard_runner import cli
from vibeboard_runner.executor import Executor
from vibeboard_runner.registry import NodeRegistry
from vibeboard_runner.workflow import apply_overrides, load_workflow
from vibeboard.managed_api import fallback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UI = os.path.join(ROOT, "workflows", "managed_api.json")
API = os.path.join(ROOT, "workflows", "managed_api.api.json")


def _executor(tmp_path):
    return Executor(NodeRegistry.default(), output_dir=str(tmp_path / "output"), input_dir=str(tmp_path / "input"),
                    temp_dir=str(tmp_path / "temp"), models_dir=str(tmp_path / "models"))


def test_workflow_validates_and_says_it_needs_keys(api_env, capsys):
    assert cli.main(["validate", UI]) == 0 and cli.main(["validate", API]) == 0
    api = json.load(open(API))
    assert {k: v["inputs"] for k, v in load_workflow(UI, NodeRegistry.default()).items()} == \
        {k: v["inputs"] for k, v in api.items()}
    note = next(n for n in json.load(open(UI))["nodes"] if n["type"] == "MarkdownNote")
    assert "FAL_KEY" in note["widgets_values"][0] and "XAI_API_KEY" in note["widgets_values"][0]
    titles = [n["_meta"]["title"] for n in api.values() if n["class_type"] != "SaveImage"]
    assert sum("needs FAL_KEY" in t for t in titles) == 3 and any("needs XAI_API_KEY" in t for t in titles)
    # the graph names the variables only; no key value anywhere
    assert {n["inputs"]["api_key_env"] for n in api.values() if "api_key_env" in n["inputs"]} == {"FAL_KEY",
                                                                                                "XAI_API_KEY"}


def test_without_keys_the_run_stops_with_the_variable_named(api_env, monkeypatch):
    monkeypatch.delenv("FAL_KEY")
    monkeypatch.delenv("XAI_API_KEY")
    result = _executor(api_env).execute(json.load(open(API)))
    assert result.status == "error"
    assert "$FAL_KEY is not set" in result.error["exception_message"]
    assert "input 'api_key_env'" in result.error["exception_message"]


def test_runs_end_to_end_against_the_replayed_providers(api_env, monkeypatch, tmp_path):
    monkeypatch.setattr(fallback, "_gpu_state", lambda: (False, 0.0))
    flux_dev = json.loads(json.dumps(load_cassette("fal_flux_t2i.json")).replace("/schnell", "/dev")
                          .replace("4f1c2a9e-flux-0001", "4f1c2a9e-flux-0002"))
    cassette = (load_cassette("fal_flux_t2i.json") + load_cassette("fal_kling_i2v.json") + flux_dev
                + load_cassette("grok_vision.json", "ok"))
    files = {"flux_out.png": tiny_png(), "output.mp4": tiny_mp4(tmp_path / "clip.mp4")}
    with ReplayServer(cassette, files) as server:
        for env in ("VIBEBOARD_FAL_QUEUE_URL", "VIBEBOARD_FAL_REST_URL", "VIBEBOARD_FAL_CDN_URL"):
            monkeypatch.setenv(env, server.base)
        prompt = apply_overrides(json.load(open(API)), {"3.base_url": server.base + "/v1"})
        result = _executor(api_env).execute(prompt)
    assert result.status == "success", result.error
    assert "4" not in result.executed  # no GPU here: the fallback used fal-ai/flux/dev instead
    kinds = sorted((r["kind"], r["model"], r["status"], r["fallback"]) for r in ledger_rows(api_env))
    assert kinds == [("analysis", "grok-4", "ok", 0),
                     ("clip", "fal-ai/kling-video/v2.5-turbo/pro/image-to-video", "ok", 0),
                     ("image", "fal-ai/flux/dev", "ok", 1), ("image", "fal-ai/flux/schnell", "ok", 0)]
    names = {f["filename"] for f in result.output_files()}
    assert {"keyframe_00001_.png", "shot_00001_.mp4", "shot_00001_.mp4.vibeboard.json"} <= names
    assert os.path.exists(api_env / "output" / "vibeboard" / "vision" / "shot_010_v001.json")
    assert len({r["run_id"] for r in ledger_rows(api_env)}) == 1  # one run id groups the run's calls
    # Dailies: the API clip is a version whose recipe is its provenance; Grok's tags are a note on it
    from vibeboard.dailies.nodes import open_store
    store = open_store("test", "demo")
    (version,) = store.stack("shot_010")
    assert version["recipe"]["source"] == "api" and version["recipe"]["provider"] == "fal.ai"
    assert version["recipe"]["model"] == "fal-ai/kling-video/v2.5-turbo/pro/image-to-video"
    grok = [n for n in store.notes(version["id"]) if n["author"] == "grok-vision"]
    assert len(grok) == 1 and "lighthouse" in grok[0]["text"] and grok[0]["end_frame"] == 7
