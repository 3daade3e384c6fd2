"""VibeBoard's LLM layer: one small provider interface, two wire protocols, structured output by one tool call.

    cfg = LLMConfig(protocol="openai", base_url="https://api.minimax.io/v1", model="MiniMax-M2.1",
                    api_key_env="MINIMAX_API_KEY")
    provider = cfg.provider()                      # OpenAIChatProvider or AnthropicMessagesProvider
    done = provider.complete(system, [{"role": "user", "content": "…"}], tools=[tool.spec()], tool_choice=tool.name)
    result = structured.call_tool(provider, system, prompt, tool)     # Pydantic-validated, one retry, then fails

`protocol="openai"` covers MiniMax `/v1`, vLLM, SGLang, llama.cpp server, LiteLLM proxy (the `openai` SDK);
`protocol="anthropic"` covers Claude and MiniMax `/anthropic` (the `anthropic` SDK). Shared by Script Lab,
DirectorAgent, apiMedic and Sequencer captions. Tests replay recorded replies from a loopback server
(`cassette.py`) so the real SDKs' HTTP, retry and parsing code runs with no network.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .provider import Completion, LLMError, ToolCall, ToolSpec, strip_think

__all__ = ["LLMConfig", "PRICES", "Completion", "LLMError", "ToolCall", "ToolSpec", "strip_think"]

# US$ per million tokens (input, output). MiniMax M2.1 from LiteLLM's provider docs; unknown models cost 0.
PRICES = {"MiniMax-M2.1": (0.3, 1.2), "MiniMax-M2.1-highspeed": (0.3, 1.2)}


@dataclass
class LLMConfig:
    protocol: str = "openai"              # openai | anthropic
    base_url: str = "https://api.minimax.io/v1"
    model: str = "MiniMax-M2.1"
    api_key_env: str = "MINIMAX_API_KEY"  # the *name* of the env var; the key never enters a workflow file
    temperature: float = 1.0
    max_retries: int = 2                  # the SDK's own retries on 429/5xx/connection errors
    timeout_s: float = 120.0
    price_per_mtok: Optional[tuple] = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.protocol not in ("openai", "anthropic"):
            raise LLMError(f"LLM protocol must be 'openai' or 'anthropic', not {self.protocol!r}")
        if not (0.0 < float(self.temperature) <= 1.0):
            raise LLMError(f"temperature must be in (0, 1] (MiniMax rejects others), got {self.temperature}")
        if not self.base_url.startswith(("http://", "https://")):
            raise LLMError(f"LLM base_url must be an http(s) URL, got {self.base_url!r}")

    @property
    def prices(self) -> tuple:
        return tuple(self.price_per_mtok) if self.price_per_mtok else PRICES.get(self.model, (0.0, 0.0))

    def provider(self):
        if self.protocol == "openai":
            from .openai_chat import OpenAIChatProvider
            return OpenAIChatProvider(self)
        from .anthropic_messages import AnthropicMessagesProvider
        return AnthropicMessagesProvider(self)
