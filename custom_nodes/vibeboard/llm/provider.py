"""The provider interface: `complete(system, messages, tools, tool_choice, max_tokens) -> Completion`.

Messages are provider-neutral:
  {"role": "user", "content": str | [{"type": "text", "text"} | {"type": "image", "media_type", "data"}]}
  {"role": "assistant", "completion": Completion}      (sent back *whole*: thinking and tool calls included)
  {"role": "tool", "tool_call_id": str, "content": str, "is_error": bool}
Each adapter turns them into its wire format.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, List, Optional

_THINK = re.compile(r"<think>.*?</think>\s*", re.S)


class LLMError(RuntimeError):
    """An LLM call failed (configuration, transport, or a reply that could not be used)."""


def strip_think(text: str) -> tuple:
    """MiniMax puts its reasoning inline as <think>…</think>; return (answer, thinking)."""
    thinking = "\n".join(m.group(0)[7:].rsplit("</think>", 1)[0].strip() for m in _THINK.finditer(text or ""))
    return _THINK.sub("", text or "").strip(), thinking


@dataclass
class ToolSpec:
    name: str
    description: str
    parameters: dict          # JSON schema (from a Pydantic model)

    @classmethod
    def from_model(cls, name: str, description: str, model) -> "ToolSpec":
        return cls(name, description, model.model_json_schema())


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: Optional[dict]     # None when the model's arguments were not valid JSON
    raw_arguments: str = ""
    parse_error: str = ""


@dataclass
class Completion:
    text: str = ""
    thinking: str = ""
    tool_calls: List[ToolCall] = field(default_factory=list)
    usage: dict = field(default_factory=dict)          # input_tokens, output_tokens, cost_usd
    model: str = ""
    stop_reason: str = ""
    wire_message: Any = None                           # the assistant message exactly as the wire returned it


def api_key(cfg) -> str:
    key = os.environ.get(cfg.api_key_env or "", "")
    host = cfg.base_url.split("//", 1)[-1].split("/", 1)[0].split(":")[0]
    if not key:
        if host in ("127.0.0.1", "localhost", "::1"):
            return "local-no-key"  # self-hosted vLLM/SGLang/llama.cpp on this machine need no key
        raise LLMError(f"no API key: set the environment variable {cfg.api_key_env} (LLM at {cfg.base_url})")
    return key


def usage_with_cost(cfg, input_tokens: int, output_tokens: int) -> dict:
    p_in, p_out = cfg.prices
    return {"input_tokens": int(input_tokens or 0), "output_tokens": int(output_tokens or 0),
            "cost_usd": round((input_tokens or 0) * p_in / 1e6 + (output_tokens or 0) * p_out / 1e6, 8)}


def parse_arguments(raw) -> tuple:
    if isinstance(raw, dict):
        return raw, json.dumps(raw), ""
    try:
        value = json.loads(raw or "")
    except (TypeError, ValueError) as exc:
        return None, raw or "", f"arguments are not valid JSON: {exc}"
    if not isinstance(value, dict):
        return None, raw, "arguments must be a JSON object"
    return value, raw, ""
