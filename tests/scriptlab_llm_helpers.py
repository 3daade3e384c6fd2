"""LLM test scenarios shared by the tests and by tests/data/scriptlab/record_cassettes.py.

Each scenario runs the real Script Lab LLM path (real `openai` / `anthropic` SDK → loopback cassette server).
The cassettes in tests/data/scriptlab/cassettes were recorded by record_cassettes.py through the cassette
server's record mode from a loopback upstream that serves the MiniMax-format replies written below (this
machine has no API key); with a key the same script records from the real endpoint.
"""
import json
import os

from vibeboard.common.replay_server import ReplayServer
from vibeboard.llm import LLMConfig
from vibeboard.scriptlab import pipeline

HERE = os.path.dirname(os.path.abspath(__file__))
CASSETTES = os.path.join(HERE, "data", "scriptlab", "cassettes")
MODEL = "MiniMax-M2.1"

GOOD_ARGS = {
    "elements": [
        {"scene": "1", "category": "props", "label": "BRASS COMPASS", "quote": "a brass compass on a chain",
         "implied": False, "reason": "Mara's compass, thrown away in scene 4"},
        {"scene": "2", "category": "special_equipment", "label": "RAIN MACHINE", "quote": "Rain hammers the glass",
         "implied": True, "reason": "rain on the lamp-room glass needs rain towers"},
        {"scene": "4", "category": "makeup", "label": "WIND-SWEPT HAIR", "quote": "Wind tears at her coat",
         "implied": True, "reason": "gale on the gallery"},
    ],
    "aliases": [{"alias": "CAPTAIN TOMAS", "canonical": "TOMAS", "reason": "same man, titled in scene 4"}],
    "scenes": [{"scene": "1", "synopsis": "Mara hauls her cart along the quay; Old Tomas warns her off."},
               {"scene": "4", "synopsis": "On the gallery Mara throws her father's compass into the sea.",
                "script_day": 1, "day_quote": "CONTINUOUS"}],
}


def openai_reply(content, arguments, n=1, usage=(1830, 412)):
    return {"id": f"chatcmpl-vb{n}", "object": "chat.completion", "created": 1764590000, "model": MODEL,
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": content,
                "tool_calls": [{"id": f"call_function_{n}", "type": "function",
                                "function": {"name": "submit_breakdown", "arguments": arguments}}]}}],
            "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}}


def anthropic_reply(thinking, tool_input, n=1, usage=(1795, 388)):
    return {"id": f"msg_vb{n}", "type": "message", "role": "assistant", "model": MODEL,
            "content": [{"type": "thinking", "thinking": thinking, "signature": f"sig{n}"},
                        {"type": "tool_use", "id": f"call_function_{n}", "name": "submit_breakdown",
                         "input": tool_input}],
            "stop_reason": "tool_use", "stop_sequence": None,
            "usage": {"input_tokens": usage[0], "output_tokens": usage[1]}}


BAD_CATEGORY = {"elements": [{"scene": "2", "category": "catering", "label": "SANDWICHES",
                              "quote": "Rain hammers the glass", "implied": True}], "aliases": [], "scenes": []}
BAD_QUOTE = {"elements": [{"scene": "4", "category": "props", "label": "HARPOON", "quote": "a golden harpoon",
                           "implied": False}], "aliases": [], "scenes": []}

# scenario → (protocol, base-url suffix, authored upstream replies in order)
SCENARIOS = {
    "openai_ok": ("openai", "/v1", [openai_reply(
        "<think>Scene 2 is a storm at night: rain on glass needs equipment. The compass matters later.</think>",
        json.dumps(GOOD_ARGS))]),
    "openai_bad_json_then_ok": ("openai", "/v1", [
        openai_reply("<think>List the props.</think>", '{"elements": [{"scene": "1", "category": "props", ', 1),
        openai_reply("<think>Resend complete JSON.</think>", json.dumps(GOOD_ARGS), 2)]),
    "anthropic_ok": ("anthropic", "/anthropic", [
        anthropic_reply("Storm at night in scene 2; the compass returns in scene 4.", GOOD_ARGS, 1, (1795, 402))]),
    "anthropic_rejected_twice": ("anthropic", "/anthropic", [
        anthropic_reply("Crew needs feeding during the storm scene.", BAD_CATEGORY, 1),
        anthropic_reply("Use a prop from scene 4 instead.", BAD_QUOTE, 2)]),
}


def config(protocol, base_url):
    return LLMConfig(protocol=protocol, base_url=base_url, model=MODEL, api_key_env="VB_TEST_NO_SUCH_KEY",
                     max_retries=0, timeout_s=20)


def run_scenario(name, server_url, db_path):
    protocol, suffix, _ = SCENARIOS[name]
    provider = config(protocol, server_url + suffix).provider()
    return pipeline.run_breakdown(pipeline.sample_path(), db_path, llm=provider)


def scripted_upstream(replies) -> ReplayServer:
    """A started loopback 'LLM' answering each POST with the next authored reply (used only to record cassettes)."""
    return ReplayServer([{"method": "POST", "path": "re:.*", "json": reply} for reply in replies]).start()
