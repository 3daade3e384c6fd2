"""Speech for a performance from ElevenLabs (`POST /v1/text-to-speech/{voice_id}/with-timestamps`) through the
official `elevenlabs` SDK: PCM audio plus per-character start/end times (what captions and the lip-sync check
need). The actor card's voice (voice id, settings, seed) makes the call reproducible.

Errors are the provider's own words: 401 (bad key) and other 4xx fail at once; 429 and 5xx are retried with the
server's `Retry-After` (or a short backoff) a few times, then surfaced with status and message. The SDK's own
hidden retries are switched off so every attempt is ours and counted.
"""
from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Callable, List, Optional

import numpy as np

RETRY_STATUSES = (429, 500, 502, 503, 504)


class TTSError(RuntimeError):
    def __init__(self, status: Optional[int], message: str):
        self.status = status
        super().__init__(f"ElevenLabs error {status}: {message}" if status else f"ElevenLabs error: {message}")


@dataclass
class Speech:
    waveform: np.ndarray          # float32 [1, N]
    sample_rate: int
    characters: List[str]
    starts: List[float]           # seconds, one per character
    ends: List[float]
    attempts: int

    def words(self) -> List[dict]:
        """Word timings from the character alignment: [{"text", "start", "end"}] (captions)."""
        out, cur = [], None
        for ch, s, e in zip(self.characters, self.starts, self.ends):
            if ch.isspace():
                cur = None
                continue
            if cur is None:
                cur = {"text": "", "start": s, "end": e}
                out.append(cur)
            cur["text"] += ch
            cur["end"] = e
        return out


def _message(body) -> str:
    """The provider's message from `{"detail": {"status", "message"}}`, `{"detail": "..."}` or raw text."""
    if isinstance(body, dict):
        detail = body.get("detail", body)
        if isinstance(detail, dict):
            return str(detail.get("message") or detail.get("status") or detail)
        return str(detail)
    return str(body)[:300]


def _retry_after(headers, attempt: int) -> float:
    try:
        return min(float((headers or {}).get("retry-after", "")), 30.0)
    except ValueError:
        return min(0.5 * 2 ** attempt, 8.0)


def synthesize(text: str, voice_id: str, api_key: str, *, model_id: str = "eleven_multilingual_v2",
               settings: Optional[dict] = None, seed: Optional[int] = None, sample_rate: int = 24000,
               base_url: Optional[str] = None, max_attempts: int = 4, timeout_s: float = 60.0,
               sleep: Callable[[float], None] = time.sleep) -> Speech:
    try:
        from elevenlabs import ElevenLabs, VoiceSettings
        from elevenlabs.core.api_error import ApiError
    except ImportError as e:
        raise TTSError(None, "the ElevenLabs client is not installed: pip install vibeboard[foundry]") from e
    if not (text or "").strip():
        raise TTSError(None, "no text to speak")
    if not api_key:
        raise TTSError(None, "no API key (set ELEVENLABS_API_KEY or give api_key)")
    client = ElevenLabs(api_key=api_key, base_url=base_url, timeout=timeout_s)
    kwargs = {"text": text, "model_id": model_id, "output_format": f"pcm_{int(sample_rate)}",
              "request_options": {"max_retries": 0}}
    if settings:
        kwargs["voice_settings"] = VoiceSettings(**settings)
    if seed is not None:
        kwargs["seed"] = int(seed)
    for attempt in range(1, max_attempts + 1):
        try:
            reply = client.text_to_speech.convert_with_timestamps(voice_id, **kwargs)
            break
        except ApiError as e:
            status = e.status_code
            if status in RETRY_STATUSES and attempt < max_attempts:
                sleep(_retry_after(e.headers, attempt))
                continue
            raise TTSError(status, _message(e.body)) from None
    pcm = np.frombuffer(base64.b64decode(reply.audio_base_64), dtype="<i2").astype(np.float32) / 32768.0
    align = reply.alignment
    if align is None:
        raise TTSError(200, "the reply has no character alignment")
    return Speech(pcm[None], int(sample_rate), list(align.characters),
                  [float(x) for x in align.character_start_times_seconds],
                  [float(x) for x in align.character_end_times_seconds], attempt)
