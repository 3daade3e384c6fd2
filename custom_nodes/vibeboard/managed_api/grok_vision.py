"""Grok vision (xAI's OpenAI-compatible API) through the LLM layer's OpenAI-style adapter (the `openai` SDK):
images or sampled video frames → a description and tags, as a validated tool call (the layer's rule:
structured output = tool call + Pydantic validation, one repair round, then a loud failure). Errors keep the
provider's status and message (the layer wraps the SDK's exception; we read it back as the cause).
"""
from __future__ import annotations

import base64
import time
from typing import List

from pydantic import BaseModel, Field

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


def sample_frames(count: int, wanted: int) -> List[int]:
    """`wanted` evenly spaced frame indices out of `count` (first and last included)."""
    wanted = max(1, min(int(wanted), count))
    if wanted == 1:
        return [0]
    return sorted({round(i * (count - 1) / (wanted - 1)) for i in range(wanted)})


def _content(pngs: List[bytes], instructions: str) -> list:
    """The user turn in the LLM layer's provider-neutral form (text + base64 images)."""
    text = "Analyse these frames." + (f" Notes from the user: {instructions}" if instructions else "")
    return [{"type": "text", "text": text}] + [
        {"type": "image", "media_type": "image/png", "data": base64.b64encode(png).decode("ascii")} for png in pngs]


class GrokVision:
    """One analysis call through the LLM layer's OpenAI-style adapter (the `openai` SDK against `base_url`)."""

    def __init__(self, node: str, key: str, key_env: str, *, model: str, base_url: str = DEFAULT_BASE_URL,
                 timeout_s: float = 120.0, max_retries: int = 2):
        try:
            import openai
        except ImportError:
            raise MissingExtraError(node, "openai") from None
        from ..llm import LLMConfig, LLMError
        from .costs import load_prices
        self.openai, self.llm_error = openai, LLMError
        self.node, self.key, self.key_env, self.model, self.timeout_s = node, key, key_env, model, timeout_s
        price = load_prices()["models"].get(model, {})
        try:
            cfg = LLMConfig(protocol="openai", base_url=base_url or DEFAULT_BASE_URL, model=model,
                            api_key_env=key_env, temperature=0.2, max_retries=max_retries, timeout_s=timeout_s,
                            price_per_mtok=(price.get("input", 0.0), price.get("output", 0.0)))
        except LLMError as exc:
            raise ManagedApiError(node, "base_url", str(exc), kind="input", provider=PROVIDER) from None
        self.provider = cfg.provider()

    def close(self) -> None:
        self.provider.client.close()

    def _error(self, exc: Exception) -> ManagedApiError:
        """The SDK's exception (the LLM layer keeps it as the cause) → an error a user can act on."""
        openai = self.openai
        cause = exc.__cause__ if isinstance(exc, self.llm_error) and exc.__cause__ is not None else exc
        if isinstance(cause, openai.APITimeoutError):
            return ManagedApiError(self.node, "timeout_s", f"{PROVIDER} did not answer within {self.timeout_s:g} s "
                                   "(retried); try again or raise timeout_s", kind="timeout", provider=PROVIDER)
        if isinstance(cause, openai.APIConnectionError):
            return ManagedApiError(self.node, "base_url", f"cannot reach {PROVIDER}: {scrub(cause, [self.key])}",
                                   kind="server", provider=PROVIDER)
        if isinstance(cause, openai.APIStatusError):
            # the SDK keeps the body's "error" member: a dict {"message": ...} from OpenAI, a string from xAI
            body = cause.body
            message = provider_message(body if isinstance(body, dict) else None,
                                       body if isinstance(body, str) else cause.message)
            return from_status(self.node, PROVIDER, cause.status_code, message, key_env=self.key_env,
                               input_for_rejection="images", secrets=[self.key])
        kind = "queue" if type(exc).__name__ == "StructuredOutputError" else "server"
        return ManagedApiError(self.node, "model", f"{PROVIDER} {self.model}: {scrub(exc, [self.key])}", kind=kind,
                               provider=PROVIDER)

    def analyse(self, pngs: List[bytes], instructions: str = "") -> dict:
        """→ {"analysis": Analysis, "usage": {input_tokens, output_tokens, cost_usd}, "seconds", "attempts"}.
        A forced `submit_analysis` tool call validated by Pydantic; one repair round (the LLM layer's rule)."""
        from ..llm import structured
        started = time.monotonic()
        try:
            result = structured.call_tool(self.provider, SYSTEM, _content(pngs, instructions), TOOL_NAME,
                                          "Report the visual analysis.", Analysis, max_tokens=1024)
        except Exception as exc:
            raise self._error(exc) from None
        return {"analysis": result.value, "usage": result.usage, "seconds": time.monotonic() - started,
                "attempts": result.attempts}


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
        vision.close()
    result["frames"] = indices
    return result
