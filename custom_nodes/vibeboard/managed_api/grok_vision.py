"""Grok vision (xAI's OpenAI-compatible API) through the `openai` SDK: images or sampled video frames →
a description and tags, as a validated tool call (the LLM layer's rule: structured output = tool call +
Pydantic validation, one repair round, then a loud failure).

The LLM layer (one provider interface, OpenAI-style adapter) is being built separately; until it lands this
module talks to the `openai` SDK itself, with the same call shape, so swapping in its adapter is one place.
"""
from __future__ import annotations

import base64
import json
import time
from typing import List

from pydantic import BaseModel, Field, ValidationError

from .catalog import XAI_BASE_URL as DEFAULT_BASE_URL
from .errors import ManagedApiError, MissingExtraError, from_status, provider_message, scrub

PROVIDER = "xAI"
TOOL_NAME = "submit_analysis"
SYSTEM = ("You are the visual analyst of a film studio. Look at the frames (in time order when they come from "
          "one clip) and report what a director, editor or asset librarian needs: a short factual description, "
          "search tags (lowercase nouns/adjectives: subjects, setting, lighting, colour, camera), the shot type, "
          "the subjects and the mood. Describe only what is visible.")


class Analysis(BaseModel):
    description: str = Field(description="2-4 factual sentences about what is visible")
    tags: List[str] = Field(description="5-20 lowercase search tags", min_length=1)
    shot_type: str = Field("", description="e.g. wide, medium, close-up, insert, aerial")
    subjects: List[str] = Field(default_factory=list, description="people, creatures or objects that matter")
    mood: str = Field("", description="one or two words")


TOOL = {"type": "function", "function": {"name": TOOL_NAME, "description": "Report the visual analysis.",
                                         "parameters": Analysis.model_json_schema()}}


def sample_frames(count: int, wanted: int) -> List[int]:
    """`wanted` evenly spaced frame indices out of `count` (first and last included)."""
    wanted = max(1, min(int(wanted), count))
    if wanted == 1:
        return [0]
    return sorted({round(i * (count - 1) / (wanted - 1)) for i in range(wanted)})


def _content(pngs: List[bytes], instructions: str) -> list:
    text = "Analyse these frames." + (f" Notes from the user: {instructions}" if instructions else "")
    parts = [{"type": "text", "text": text}]
    for png in pngs:
        parts.append({"type": "image_url", "image_url": {
            "url": "data:image/png;base64," + base64.b64encode(png).decode("ascii"), "detail": "high"}})
    return parts


class GrokVision:
    def __init__(self, node: str, key: str, key_env: str, *, model: str, base_url: str = DEFAULT_BASE_URL,
                 timeout_s: float = 120.0, max_retries: int = 2):
        try:
            import openai
        except ImportError:
            raise MissingExtraError(node, "openai") from None
        self.openai = openai
        self.node, self.key, self.key_env, self.model = node, key, key_env, model
        self.client = openai.OpenAI(api_key=key, base_url=base_url or DEFAULT_BASE_URL, timeout=timeout_s,
                                    max_retries=max_retries)
        self.timeout_s = timeout_s

    def _error(self, exc: Exception) -> ManagedApiError:
        openai = self.openai
        if isinstance(exc, openai.APITimeoutError):
            return ManagedApiError(self.node, "timeout_s", f"{PROVIDER} did not answer within {self.timeout_s:g} s "
                                   "(retried); try again or raise timeout_s", kind="timeout", provider=PROVIDER)
        if isinstance(exc, openai.APIConnectionError):
            return ManagedApiError(self.node, "base_url", f"cannot reach {PROVIDER}: {scrub(exc, [self.key])}",
                                   kind="server", provider=PROVIDER)
        if isinstance(exc, openai.APIStatusError):
            # the SDK keeps the body's "error" member: a dict {"message": ...} from OpenAI, a string from xAI
            body = exc.body
            message = provider_message(body if isinstance(body, dict) else None,
                                       body if isinstance(body, str) else exc.message)
            return from_status(self.node, PROVIDER, exc.status_code, message, key_env=self.key_env,
                               input_for_rejection="images", secrets=[self.key])
        return ManagedApiError(self.node, "model", f"{PROVIDER} call failed: {type(exc).__name__}: "
                               f"{scrub(exc, [self.key])}", kind="server", provider=PROVIDER)

    def _call(self, messages: list):
        try:
            return self.client.chat.completions.create(
                model=self.model, messages=messages, tools=[TOOL], max_tokens=1024,
                tool_choice={"type": "function", "function": {"name": TOOL_NAME}})
        except Exception as exc:
            raise self._error(exc) from None

    def analyse(self, pngs: List[bytes], instructions: str = "") -> dict:
        """→ {"analysis": Analysis, "usage": {input_tokens, output_tokens}, "seconds": float}."""
        started = time.monotonic()
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": _content(pngs, instructions)}]
        usage = {"input_tokens": 0, "output_tokens": 0}
        for attempt in range(2):
            response = self._call(messages)
            if response.usage is not None:
                usage["input_tokens"] += response.usage.prompt_tokens or 0
                usage["output_tokens"] += response.usage.completion_tokens or 0
            message = response.choices[0].message
            calls = [c for c in (message.tool_calls or []) if c.function.name == TOOL_NAME]
            raw = calls[0].function.arguments if calls else (message.content or "")
            try:
                analysis = Analysis.model_validate_json(raw)
                return {"analysis": analysis, "usage": usage, "seconds": time.monotonic() - started,
                        "response_id": response.id}
            except ValidationError as exc:
                if attempt == 1:
                    raise ManagedApiError(self.node, "model", f"{PROVIDER} {self.model} did not return a valid "
                                          f"analysis twice: {exc.errors()[0].get('msg')}", kind="queue",
                                          provider=PROVIDER) from None
                # one repair round: show the model its own answer and what was wrong
                messages.append(message.model_dump(exclude_none=True))
                if calls:
                    messages.append({"role": "tool", "tool_call_id": calls[0].id,
                                     "content": json.dumps({"error": str(exc)[:800]})})
                else:
                    messages.append({"role": "user", "content": f"Call {TOOL_NAME} with valid arguments: {exc}"})
        raise AssertionError("unreachable")


def analyse_frames(node: str, frames, *, key: str, key_env: str, model: str, base_url: str, timeout_s: float,
                   max_frames: int, instructions: str = "", max_retries: int = 2) -> dict:
    """IMAGE batch (stills or a clip's frames) → analysis dict with the frame indices that were looked at."""
    from .generate import image_png
    indices = sample_frames(int(frames.shape[0]), max_frames)
    pngs = [image_png(frames[i:i + 1]) for i in indices]
    vision = GrokVision(node, key, key_env, model=model, base_url=base_url, timeout_s=timeout_s,
                        max_retries=max_retries)
    try:
        result = vision.analyse(pngs, instructions)
    finally:
        vision.client.close()
    result["frames"] = indices
    return result
