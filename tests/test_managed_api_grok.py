"""Grok vision through the real `openai` SDK against a loopback server replaying recorded xAI replies:
frames → validated tool call → description/tags in the JSON + SQLite sidecars, the cost in the ledger,
each error class, and the missing-key error."""
import base64
import json

import pytest
import torch
from managed_api_replay import XAI_KEY, ReplayServer, ledger_rows, load_cassette

from vibeboard.managed_api import grok_vision, nodes, sidecar
from vibeboard.managed_api.errors import ManagedApiError


def _frames(count=6):
    return torch.rand(count, 24, 32, 3, generator=torch.Generator().manual_seed(1))


def _run(server, frames=None, **kw):
    args = dict(asset_id="shot_010/v003", model="grok-4", max_frames=3, instructions="note the weather",
                api_key_env="XAI_API_KEY", base_url=server.base + "/v1", timeout_s=10, sinks="json,sqlite")
    args.update(kw)
    return nodes.VBGrokVision().analyse(frames if frames is not None else _frames(), **args)


def test_clip_frames_become_tags_in_both_sidecars_and_a_priced_ledger_row(api_env):
    with ReplayServer(load_cassette("grok_vision.json", "ok")) as server:
        out = _run(server)
    description, tags, record = out["result"]
    assert out["ui"]["files"] == [{"filename": "shot_010_v003.json", "subfolder": "vibeboard/vision",
                                   "type": "output"}]
    assert description.startswith("A lighthouse") and tags == "lighthouse, dusk, coast, waves, wide shot"
    request = server.calls("POST", "/v1/chat/completions")[0]
    assert request["headers"]["authorization"] == f"Bearer {XAI_KEY}"
    body = json.loads(request["body"])
    assert body["model"] == "grok-4"
    assert body["tool_choice"] == {"type": "function", "function": {"name": "submit_analysis"}}
    images = [p for p in body["messages"][1]["content"] if p["type"] == "image_url"]
    assert len(images) == 3  # frames 0, 2/3 of the way, last
    assert base64.b64decode(images[0]["image_url"]["url"].split(",", 1)[1])[:4] == b"\x89PNG"
    assert "note the weather" in body["messages"][1]["content"][0]["text"]

    stored = json.loads(record)
    assert stored["frames"] == [0, 2, 5]  # evenly sampled out of 6 (round half to even)
    saved = json.load(open(api_env / "output" / "vibeboard" / "vision" / "shot_010_v003.json"))
    assert saved["tags"] == ["lighthouse", "dusk", "coast", "waves", "wide shot"] and saved["shot_type"] == "wide"
    (note,) = sidecar.notes_for("shot_010/v003", str(api_env / "vision.sqlite"))
    assert note["description"] == saved["description"] and note["details"]["mood"] == "calm"
    (row,) = ledger_rows(api_env)
    assert row["kind"] == "analysis" and row["status"] == "ok" and row["note"].startswith("1 call")
    assert row["cost_usd"] == pytest.approx(1450 / 1e6 * 3.0 + 96 / 1e6 * 15.0)
    assert XAI_KEY not in record


def test_an_invalid_tool_call_gets_one_repair_round(api_env):
    with ReplayServer(load_cassette("grok_vision.json", "repair")) as server:
        out = _run(server)
    assert out["result"][1].startswith("lighthouse")
    second = json.loads(server.calls("POST")[1]["body"])
    assert second["messages"][-1]["role"] == "tool" and "tags" in second["messages"][-1]["content"]
    (row,) = ledger_rows(api_env)  # both calls' tokens are paid
    assert row["cost_usd"] == pytest.approx(3000 / 1e6 * 3.0 + 110 / 1e6 * 15.0)


def test_rate_limit_is_retried_by_the_sdk(api_env):
    with ReplayServer(load_cassette("grok_vision.json", "rate_429_then_ok")) as server:
        _run(server)
    assert len(server.calls("POST")) == 2


@pytest.mark.parametrize("name, kind, input_name, calls, words", [
    ("auth_401", "auth", "api_key_env", 1, ["401", "Incorrect API key", "$XAI_API_KEY"]),
    ("server_500", "server", "model", 3, ["500", "server had an error"]),
])
def test_errors_name_the_node_input_and_provider_message(api_env, name, kind, input_name, calls, words):
    with ReplayServer(load_cassette("grok_vision.json", name)) as server:
        with pytest.raises(ManagedApiError) as info:
            _run(server)
    assert (info.value.kind, info.value.input_name) == (kind, input_name)
    assert str(info.value).startswith(f"Grok Vision Tags: input '{input_name}'")
    assert all(w in str(info.value) for w in words)
    assert len(server.calls("POST")) == calls  # 5xx retried twice by the SDK; 401 never
    assert ledger_rows(api_env)[0]["status"] == "failed"


def test_timeout_is_a_clear_error(api_env):
    slow = [{"method": "POST", "path": "/v1/chat/completions", "times": -1, "delay_s": 1.5, "json": {}}]
    with ReplayServer(slow) as server:
        with pytest.raises(ManagedApiError) as info:
            nodes.VBGrokVision().analyse(_frames(1), "a", "grok-4", 1, "", "XAI_API_KEY", server.base + "/v1",
                                         timeout_s=0.3)
        # (the SDK's own retries are part of the call: max_retries=2 by default)
    assert info.value.kind == "timeout" and info.value.input_name == "timeout_s"


def test_without_the_key_nothing_is_sent(api_env, monkeypatch):
    monkeypatch.delenv("XAI_API_KEY")
    with ReplayServer([]) as server:
        with pytest.raises(ManagedApiError, match=r"\$XAI_API_KEY is not set"):
            _run(server)
    assert server.requests == []


def test_frame_sampling_and_asset_ids_are_safe():
    assert grok_vision.sample_frames(1, 4) == [0]
    assert grok_vision.sample_frames(10, 4) == [0, 3, 6, 9]
    assert sidecar.safe_asset_id("../../etc/passwd") == "etc_passwd"


def test_a_registered_sink_receives_the_record(api_env):
    got = []

    class AssetDb:
        def write(self, record):
            got.append(record)
            return "assetdb:1"

    sidecar.register_sink("assetdb_test", AssetDb)
    with ReplayServer(load_cassette("grok_vision.json", "ok")) as server:
        out = _run(server, sinks="assetdb_test")
    assert got[0]["asset_id"] == "shot_010/v003" and json.loads(out["result"][2])["stored"] == {
        "assetdb_test": "assetdb:1"}


def test_the_dailies_sink_notes_a_version_and_refuses_an_unknown_one(api_env, tmp_path):
    from managed_api_replay import tiny_mp4

    from vibeboard.dailies.nodes import open_store
    store = open_store("test", "demo")
    tiny_mp4(tmp_path / "v.mp4")
    version = store.add_version("sh010", str(tmp_path / "v.mp4"), frames=8)
    with ReplayServer(load_cassette("grok_vision.json", "ok") * 2) as server:
        out = _run(server, asset_id=version["id"], sinks="dailies", dailies_project="demo")
        (note,) = store.notes(version["id"])
        assert note["author"] == "grok-vision" and note["kind"] == "machine" and (note["start_frame"],
                                                                                  note["end_frame"]) == (0, 7)
        assert "Tags: lighthouse, dusk" in note["text"]
        assert json.loads(out["result"][2])["stored"]["dailies"].endswith(f"{version['id']}#note{note['id']}")
        with pytest.raises(Exception, match="input 'asset_id': cannot add the analysis to Dailies: no version"):
            _run(server, asset_id="sh999_v001", sinks="dailies", dailies_project="demo")
