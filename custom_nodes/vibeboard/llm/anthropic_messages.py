"""Anthropic-style messages through the `anthropic` SDK: Claude, MiniMax /anthropic (text and tools only)."""
from __future__ import annotations

from typing import List, Optional

from .provider import Completion, LLMError, ToolCall, ToolSpec, api_key, parse_arguments, strip_think, usage_with_cost


class AnthropicMessagesProvider:
    name = "anthropic"

    def __init__(self, cfg):
        try:
            import anthropic
        except ImportError as exc:
            raise LLMError("the Anthropic-style LLM route needs the 'anthropic' package: "
                           "pip install vibeboard[scriptlab]") from exc
        self.cfg = cfg
        self._anthropic = anthropic
        self.minimax = "minimax" in cfg.base_url.lower() or cfg.model.lower().startswith("minimax")
        self.client = anthropic.Anthropic(base_url=cfg.base_url, api_key=api_key(cfg), max_retries=cfg.max_retries,
                                          timeout=cfg.timeout_s)

    def _wire(self, messages: List[dict]) -> List[dict]:
        out = []
        for m in messages:
            role = m["role"]
            if role == "user":
                content = m["content"]
                if isinstance(content, list):
                    if self.minimax and any(p["type"] != "text" for p in content):
                        raise LLMError("MiniMax's Anthropic-compatible endpoint takes text and tool calls only, "
                                       "no images; use the OpenAI-style route or describe the image in text")
                    content = [{"type": "text", "text": p["text"]} if p["type"] == "text" else
                               {"type": "image", "source": {"type": "base64", "media_type": p["media_type"],
                                                            "data": p["data"]}} for p in content]
                out.append({"role": "user", "content": content})
            elif role == "assistant":
                out.append(m["completion"].wire_message)  # every block back: thinking, text, tool_use
            elif role == "tool":
                block = {"type": "tool_result", "tool_use_id": m["tool_call_id"], "content": m["content"]}
                if m.get("is_error"):
                    block["is_error"] = True
                out.append({"role": "user", "content": [block]})
            else:
                raise LLMError(f"unknown message role {role!r}")
        return out

    def complete(self, system: str, messages: List[dict], tools: Optional[List[ToolSpec]] = None,
                 tool_choice: Optional[str] = None, max_tokens: int = 4096) -> Completion:
        kwargs = dict(model=self.cfg.model, messages=self._wire(messages), max_tokens=max_tokens)
        # This SDK no longer takes `temperature` (recent Claude models fix sampling); MiniMax documents it,
        # in (0, 1], so it travels in the body for MiniMax only.
        extra = dict(self.cfg.extra)
        if self.minimax:
            extra.setdefault("temperature", self.cfg.temperature)
        if extra:
            kwargs["extra_body"] = extra
        if system:
            kwargs["system"] = system
        if tools:
            kwargs["tools"] = [{"name": t.name, "description": t.description, "input_schema": t.parameters}
                               for t in tools]
            if tool_choice:
                kwargs["tool_choice"] = {"type": "tool", "name": tool_choice}
        try:
            resp = self.client.messages.create(**kwargs)
        except self._anthropic.APIError as exc:
            raise LLMError(f"LLM call to {self.cfg.base_url} failed: {type(exc).__name__}: {exc}") from exc
        texts, thinking, calls, blocks = [], [], [], []
        for block in resp.content:
            blocks.append(block.model_dump(exclude_none=True))
            if block.type == "text":
                answer, inline = strip_think(block.text)
                texts.append(answer)
                if inline:
                    thinking.append(inline)
            elif block.type == "thinking":
                thinking.append(block.thinking)
            elif block.type == "tool_use":
                args, raw, err = parse_arguments(block.input)
                calls.append(ToolCall(block.id, block.name, args, raw, err))
        return Completion(text="\n".join(t for t in texts if t), thinking="\n".join(thinking), tool_calls=calls,
                          model=resp.model or self.cfg.model, stop_reason=resp.stop_reason or "",
                          usage=usage_with_cost(self.cfg, resp.usage.input_tokens, resp.usage.output_tokens),
                          wire_message={"role": "assistant", "content": blocks})
