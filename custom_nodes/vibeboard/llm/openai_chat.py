"""OpenAI-style chat completions through the `openai` SDK: MiniMax /v1, vLLM, SGLang, llama.cpp server, LiteLLM."""
from __future__ import annotations

import json
from typing import List, Optional

from .provider import Completion, LLMError, ToolCall, ToolSpec, api_key, parse_arguments, strip_think, usage_with_cost


class OpenAIChatProvider:
    name = "openai"

    def __init__(self, cfg):
        try:
            import openai
        except ImportError as exc:
            raise LLMError("the OpenAI-style LLM route needs the 'openai' package: pip install vibeboard[scriptlab]") \
                from exc
        self.cfg = cfg
        self._openai = openai
        self.client = openai.OpenAI(base_url=cfg.base_url, api_key=api_key(cfg), max_retries=cfg.max_retries,
                                    timeout=cfg.timeout_s)

    def _wire(self, system: str, messages: List[dict]) -> List[dict]:
        out = [{"role": "system", "content": system}] if system else []
        for m in messages:
            role = m["role"]
            if role == "user":
                content = m["content"]
                if isinstance(content, list):
                    content = [{"type": "text", "text": p["text"]} if p["type"] == "text" else
                               {"type": "image_url", "image_url": {"url": f"data:{p['media_type']};base64,{p['data']}"}}
                               for p in content]
                out.append({"role": "user", "content": content})
            elif role == "assistant":
                # the whole assistant message goes back (MiniMax needs its <think> and tool calls in history)
                out.append(m["completion"].wire_message)
            elif role == "tool":
                out.append({"role": "tool", "tool_call_id": m["tool_call_id"], "content": m["content"]})
            else:
                raise LLMError(f"unknown message role {role!r}")
        return out

    def complete(self, system: str, messages: List[dict], tools: Optional[List[ToolSpec]] = None,
                 tool_choice: Optional[str] = None, max_tokens: int = 4096) -> Completion:
        kwargs = dict(model=self.cfg.model, messages=self._wire(system, messages), max_tokens=max_tokens,
                      temperature=self.cfg.temperature)
        if tools:
            kwargs["tools"] = [{"type": "function", "function": {"name": t.name, "description": t.description,
                                                                 "parameters": t.parameters}} for t in tools]
            if tool_choice:
                kwargs["tool_choice"] = {"type": "function", "function": {"name": tool_choice}}
        if self.cfg.extra:
            kwargs["extra_body"] = dict(self.cfg.extra)
        try:
            resp = self.client.chat.completions.create(**kwargs)
        except self._openai.APIError as exc:
            raise LLMError(f"LLM call to {self.cfg.base_url} failed: {type(exc).__name__}: {exc}") from exc
        if not resp.choices:
            raise LLMError(f"LLM at {self.cfg.base_url} returned no choices")
        choice = resp.choices[0]
        msg = choice.message
        raw_content = msg.content or ""
        text, thinking = strip_think(raw_content)
        details = getattr(msg, "reasoning_details", None) or (msg.model_extra or {}).get("reasoning_details")
        if details and not thinking:
            thinking = "\n".join(str(d.get("text", "")) if isinstance(d, dict) else str(d) for d in details)
        calls = []
        wire_calls = []
        for tc in msg.tool_calls or []:
            args, raw, err = parse_arguments(tc.function.arguments)
            calls.append(ToolCall(tc.id, tc.function.name, args, raw, err))
            wire_calls.append({"id": tc.id, "type": "function",
                               "function": {"name": tc.function.name, "arguments": tc.function.arguments}})
        wire = {"role": "assistant", "content": raw_content}
        if wire_calls:
            wire["tool_calls"] = wire_calls
        usage = resp.usage
        return Completion(text=text, thinking=thinking, tool_calls=calls, model=resp.model or self.cfg.model,
                          usage=usage_with_cost(self.cfg, getattr(usage, "prompt_tokens", 0),
                                                getattr(usage, "completion_tokens", 0)),
                          stop_reason=choice.finish_reason or "", wire_message=json.loads(json.dumps(wire)))
