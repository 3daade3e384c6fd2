"""A deterministic in-process provider for unit tests that should not depend on cassette text: it answers each
call with the next scripted tool call and records what it was sent."""
from __future__ import annotations

import json
from typing import List

from .provider import Completion, ToolCall, parse_arguments


class ScriptedProvider:
    name = "scripted"

    def __init__(self, tool_arguments: List, model: str = "scripted"):
        self.replies = list(tool_arguments)    # each: a dict (tool arguments) or a str (raw, maybe broken JSON)
        self.sent: List[dict] = []
        self.model = model

    def complete(self, system, messages, tools=None, tool_choice=None, max_tokens=4096) -> Completion:
        self.sent.append({"system": system, "messages": list(messages), "tools": tools, "tool_choice": tool_choice})
        raw = self.replies.pop(0)
        args, text, err = parse_arguments(raw if isinstance(raw, str) else json.dumps(raw))
        name = tool_choice or (tools[0].name if tools else "")
        call = ToolCall(f"call_{len(self.sent)}", name, args, text, err)
        return Completion(tool_calls=[call], model=self.model, usage={"input_tokens": 10, "output_tokens": 5,
                                                                     "cost_usd": 0.0},
                          wire_message={"role": "assistant", "content": "", "tool_calls": [text]})
