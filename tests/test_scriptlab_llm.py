"""Script Lab with an LLM: recorded MiniMax-format replies replayed over loopback to the real openai/anthropic SDKs."""
import json
import os

import pytest

from scriptlab_llm_helpers import CASSETTES, SCENARIOS, config, run_scenario
from vibeboard.assetdb import AssetDB
from vibeboard.llm import LLMConfig, LLMError, strip_think
from vibeboard.llm.cassette import CassetteServer


@pytest.fixture
def replay():
    servers = []

    def start(name):
        server = CassetteServer(os.path.join(CASSETTES, name), mode="replay").start()
        servers.append(server)
        return server
    yield start
    for s in servers:
        s.stop()


def test_openai_route_stores_llm_tags_as_proposals_with_verbatim_evidence(replay, tmp_path):
    server = replay("openai_ok")
    result = run_scenario("openai_ok", server.url, str(tmp_path / "p.vbdb"))
    assert result["llm"]["status"] == "ok" and result["llm"]["accepted_proposals"] == 4
    assert [status for _, _, status in server.exchanges] == [200]
    with AssetDB(str(tmp_path / "p.vbdb")) as db:
        llm_tags = [t for t in db.tags(status=None) if t["source"] == "llm"]
        (day,) = [t for t in llm_tags if t["category"] == "script_day"]
        assert (day["label"], day["evidence"], day["status"]) == ("DAY 1", "CONTINUOUS", "proposed")
        llm_tags = [t for t in llm_tags if t["category"] != "script_day"]
        assert {t["label"] for t in llm_tags} == {"BRASS COMPASS", "RAIN MACHINE", "WIND-SWEPT HAIR"}
        assert all(t["status"] == "proposed" for t in llm_tags)           # never auto-accepted
        assert {t["label"] for t in llm_tags if t["implied"]} == {"RAIN MACHINE", "WIND-SWEPT HAIR"}
        text = db.script_text()
        compass = next(t for t in llm_tags if t["label"] == "BRASS COMPASS")
        assert text[compass["start"]:compass["end"]] == "a brass compass on a chain"
        assert "RAIN MACHINE" not in {t["label"] for t in db.tags()}        # accepted view: rules only
        assert db.scenes()[0]["synopsis"].startswith("Mara hauls her cart")
        (call,) = db.llm_calls()
        assert (call["input_tokens"], call["output_tokens"], call["ok"]) == (1830, 412, 1)
        assert call["cost_usd"] == pytest.approx(1830 * 0.3e-6 + 412 * 1.2e-6)


def test_invalid_json_is_sent_back_once_with_the_whole_assistant_message(replay, tmp_path):
    server = replay("openai_bad_json_then_ok")
    result = run_scenario("openai_bad_json_then_ok", server.url, str(tmp_path / "p.vbdb"))
    assert result["llm"]["status"] == "ok" and result["llm"]["attempts"] == 2
    assert "not valid JSON" in result["llm"]["errors"][0]
    second = server.exchanges[1][1]["messages"]
    assert second[-2]["role"] == "assistant" and second[-2]["content"].startswith("<think>")  # MiniMax history
    assert second[-1]["role"] == "tool" and "not valid JSON" in second[-1]["content"]
    with AssetDB(str(tmp_path / "p.vbdb")) as db:
        assert [c["ok"] for c in db.llm_calls()] == [0, 1]


def test_unknown_category_then_a_quote_not_in_the_scene_fails_and_stores_nothing(replay, tmp_path):
    server = replay("anthropic_rejected_twice")
    result = run_scenario("anthropic_rejected_twice", server.url, str(tmp_path / "p.vbdb"))
    report = result["llm"]
    assert report["status"].startswith("rejected") and len(report["errors"]) == 2
    assert "category" in report["errors"][0] and "catering" in report["errors"][0]
    assert "'a golden harpoon' is not verbatim in scene 4" in report["errors"][1]
    retry = server.exchanges[1][1]["messages"]
    assert retry[-2]["content"][0]["type"] == "thinking"                # the whole message went back
    assert retry[-1]["content"][0]["type"] == "tool_result" and retry[-1]["content"][0]["is_error"]
    with AssetDB(str(tmp_path / "p.vbdb")) as db:
        assert not [t for t in db.tags(status=None) if t["source"] == "llm"]   # never written
        assert len(db.tags()) > 20                                              # the rules' breakdown is kept
        assert [c["ok"] for c in db.llm_calls()] == [0, 0]


def test_only_changed_scenes_go_to_the_llm_on_a_revision(replay, tmp_path):
    server = replay("openai_ok")
    run_scenario("openai_ok", server.url, str(tmp_path / "p.vbdb"))
    again = run_scenario("openai_ok", server.url, str(tmp_path / "p.vbdb"))
    assert again["llm"]["status"] == "no changed scenes" and len(server.exchanges) == 1


def test_a_cassette_miss_is_a_readable_error(replay, tmp_path):
    server = replay("openai_ok")
    provider = config("openai", server.url + "/v1").provider()
    with pytest.raises(LLMError, match="cassette_miss|599"):
        provider.complete("system", [{"role": "user", "content": "something never recorded"}])


def test_minimax_quirks():
    assert strip_think("<think>plan\nmore</think>\nAnswer.") == ("Answer.", "plan\nmore")
    with pytest.raises(LLMError, match=r"\(0, 1\]"):
        LLMConfig(temperature=0.0)
    with pytest.raises(LLMError, match=r"\(0, 1\]"):
        LLMConfig(temperature=1.5)
    anth = LLMConfig(protocol="anthropic", base_url="http://127.0.0.1:9/anthropic", model="MiniMax-M2.1").provider()
    image = [{"type": "text", "text": "what is this"}, {"type": "image", "media_type": "image/png", "data": "AA=="}]
    with pytest.raises(LLMError, match="no images"):
        anth.complete("", [{"role": "user", "content": image}])


def test_a_remote_endpoint_without_its_key_says_which_variable(monkeypatch):
    monkeypatch.delenv("MINIMAX_API_KEY", raising=False)
    with pytest.raises(LLMError, match="MINIMAX_API_KEY"):
        LLMConfig().provider()


def test_cassettes_are_replayable_files():
    for name in SCENARIOS:
        files = os.listdir(os.path.join(CASSETTES, name))
        assert files and all(json.load(open(os.path.join(CASSETTES, name, f)))["status"] == 200 for f in files)


def test_cli_with_an_llm_that_fails_says_so_loudly_and_keeps_the_rules_breakdown(replay, tmp_path, capsys,
                                                                                   monkeypatch):
    from vibeboard_runner import cli
    from vibeboard.scriptlab import pipeline
    server = replay("anthropic_rejected_twice")
    monkeypatch.chdir(tmp_path)
    code = cli.main(["script", "breakdown", pipeline.sample_path(), "--db", "p.vbdb", "--llm", "anthropic",
                     "--llm-base-url", server.url + "/anthropic", "--llm-model", "MiniMax-M2.1"])
    out = capsys.readouterr()
    assert code == 4 and "LLM pass failed" in out.err and "HARBOUR ROAD" in out.out


def test_llm_nodes_report_bad_settings_by_node_and_input(tmp_path, monkeypatch):
    from vibeboard.common import runtime
    from vibeboard.scriptlab import importers
    from vibeboard.scriptlab.nodes import VBLLMConfig, VBScriptBreakdown
    with pytest.raises(runtime.NodeInputError, match="LLM Endpoint: input 'temperature'"):
        VBLLMConfig().config("openai", "https://api.minimax.io/v1", "MiniMax-M2.1", "MINIMAX_API_KEY", 0.0)
    (cfg,) = VBLLMConfig().config("anthropic", "https://api.minimax.io/anthropic", "MiniMax-M2.1", "VB_NO_KEY", 1.0)
    monkeypatch.delenv("VB_NO_KEY", raising=False)
    monkeypatch.setitem(runtime._dirs, "output", str(tmp_path))  # restored after the test
    play = importers.load_script(pipeline_sample())
    with pytest.raises(runtime.NodeInputError, match="Script Breakdown → Asset DB: input 'llm'.*VB_NO_KEY"):
        VBScriptBreakdown().run(play, "p.vbdb", llm=cfg)


def pipeline_sample():
    from vibeboard.scriptlab import pipeline
    return pipeline.sample_path()


def test_anthropic_route_reads_thinking_and_tool_use_blocks(replay, tmp_path):
    server = replay("anthropic_ok")
    result = run_scenario("anthropic_ok", server.url, str(tmp_path / "p.vbdb"))
    assert result["llm"]["status"] == "ok" and result["llm"]["accepted_proposals"] == 4
    sent = server.exchanges[0][1]
    assert sent["tool_choice"] == {"type": "tool", "name": "submit_breakdown"}
    assert sent["tools"][0]["input_schema"]["properties"]["elements"]
    with AssetDB(str(tmp_path / "p.vbdb")) as db:
        (call,) = db.llm_calls()
        assert (call["provider"], call["input_tokens"], call["output_tokens"]) == ("anthropic", 1795, 402)
        assert {t["label"] for t in db.tags(status="proposed")} >= {"BRASS COMPASS", "RAIN MACHINE"}
