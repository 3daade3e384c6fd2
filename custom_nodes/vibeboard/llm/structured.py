"""Structured output: the model must answer with one call of one tool whose parameters are a Pydantic schema.

A reply is accepted only when the tool call exists, its arguments are JSON, they validate against the model and
the caller's own check passes (e.g. "every quote is verbatim in the scene"). A rejected reply is sent back once
with the validation message (as the tool's error result, after the whole assistant message); a second rejection
raises StructuredOutputError with both reasons. Nothing from a rejected reply is returned.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, List, Optional

from .provider import LLMError, ToolSpec


class ReplyRejected(ValueError):
    """A reply that does not satisfy the schema or the caller's check (the message goes back to the model)."""


class StructuredOutputError(LLMError):
    def __init__(self, message: str, errors: List[str]):
        super().__init__(message)
        self.errors = errors


@dataclass
class StructuredResult:
    value: object
    attempts: int
    usage: dict
    errors: List[str] = field(default_factory=list)   # what was rejected before the accepted reply
    thinking: str = ""


def call_tool(provider, system: str, prompt, tool_name: str, description: str, model,
              check: Optional[Callable] = None, max_tokens: int = 4096, attempts: int = 2,
              on_call: Optional[Callable] = None) -> StructuredResult:
    """Ask for one `tool_name` call validated by the Pydantic `model` (+ `check(value)` raising ReplyRejected)."""
    from pydantic import ValidationError
    spec = ToolSpec.from_model(tool_name, description, model)
    messages: List[dict] = [{"role": "user", "content": prompt}]
    errors: List[str] = []
    usage = {"input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0}
    for attempt in range(1, attempts + 1):
        done = provider.complete(system, messages, tools=[spec], tool_choice=tool_name, max_tokens=max_tokens)
        for k in usage:
            usage[k] += done.usage.get(k, 0)
        call = next((c for c in done.tool_calls if c.name == tool_name), None)
        try:
            if call is None:
                names = [c.name for c in done.tool_calls]
                raise ReplyRejected(f"no call of the tool {tool_name}" + (f" (called {names})" if names else
                                                                          " (answered in text)"))
            if call.arguments is None:
                raise ReplyRejected(call.parse_error or "arguments are not a JSON object")
            try:
                value = model.model_validate(call.arguments)
            except ValidationError as exc:
                raise ReplyRejected(_short(exc)) from None
            if check is not None:
                check(value)
        except ReplyRejected as exc:
            errors.append(str(exc))
            if on_call:
                on_call(done, False, str(exc))
            if attempt == attempts:
                raise StructuredOutputError(f"{tool_name}: the model's reply was rejected {attempt} time(s): "
                                            + " | ".join(errors), errors) from None
            messages.append({"role": "assistant", "completion": done})
            feedback = (f"Your {tool_name} call was rejected: {exc}. Call {tool_name} again with corrected "
                        "arguments; change nothing else.")
            if call is not None:
                messages.append({"role": "tool", "tool_call_id": call.id, "content": feedback, "is_error": True})
            else:
                messages.append({"role": "user", "content": feedback})
            continue
        if on_call:
            on_call(done, True, "")
        return StructuredResult(value, attempt, usage, errors, done.thinking)
    raise AssertionError("unreachable")


def _short(exc) -> str:
    parts = []
    for err in exc.errors()[:8]:
        loc = ".".join(str(x) for x in err.get("loc", ()))
        got = err.get("input")
        shown = "" if isinstance(got, (dict, list)) else f" (got {str(got)[:60]!r})"
        parts.append(f"{loc}: {err.get('msg')}{shown}")
    return "; ".join(parts)
