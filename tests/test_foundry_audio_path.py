"""Performance from audio: ElevenLabs /with-timestamps through the real SDK against a loopback server replaying
recorded replies (401/429/5xx), and a 31 s WAV → windows → segments → stitched clip of 31 s ±1 frame with no
duplicated or missing frame at any seam, AAC 48 kHz muxed."""
import base64
import json
import shutil
import subprocess
import wave

import av
import numpy as np
import pytest
import torch

from vibeboard.common.replay_server import ReplayServer
from vibeboard.foundry import performance as perf

pytest.importorskip("elevenlabs")
from vibeboard.foundry import elevenlabs_tts as tts  # noqa: E402


def _espeak(text, rate=24000):
    """Real speech (espeak-ng) as int16 PCM at `rate`, or a chirp when espeak-ng is missing."""
    if shutil.which("espeak-ng"):
        wav = subprocess.run(["espeak-ng", "--stdout", text], capture_output=True, check=True).stdout
        import io
        with wave.open(io.BytesIO(wav)) as w:
            src = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768
            sr = w.getframerate()
        wave_ = perf.to_48k(src[None], sr)[0] if sr != 48000 else src[None]
        n = int(wave_.shape[1] * rate / 48000)
        return (np.interp(np.linspace(0, wave_.shape[1] - 1, n), np.arange(wave_.shape[1]), wave_[0]) * 32767
                ).astype("<i2")
    t = np.arange(rate) / rate
    return (np.sin(2 * np.pi * (200 + 200 * t) * t) * 20000).astype("<i2")


def replay(replies):
    """The pack's loopback replay server answering each POST with the next recorded (status, headers, body)."""
    return ReplayServer([{"method": "POST", "path": "re:.*", "status": status, "headers": headers, "json": body}
                         for status, headers, body in replies]).start()


def _ok_reply(text):
    pcm = _espeak(text)
    dur = len(pcm) / 24000
    chars = list(text)
    step = dur / len(chars)
    return (200, {}, {"audio_base64": base64.b64encode(pcm.tobytes()).decode(),
                      "alignment": {"characters": chars,
                                    "character_start_times_seconds": [i * step for i in range(len(chars))],
                                    "character_end_times_seconds": [(i + 1) * step for i in range(len(chars))]},
                      "normalized_alignment": None})


def test_with_timestamps_gives_audio_and_character_times_and_retries_429_then_5xx():
    server = replay([(429, {"retry-after": "0"}, {"detail": {"status": "too_many_concurrent_requests",
                                                             "message": "Too many concurrent requests"}}),
                     (503, {}, {"detail": "upstream unavailable"}),
                     _ok_reply("Hello there")])
    try:
        waits = []
        speech = tts.synthesize("Hello there", "vid_123", "k", base_url=server.url, seed=7,
                                settings={"stability": 0.4, "similarity_boost": 0.8}, sleep=waits.append)
    finally:
        server.close()
    assert speech.attempts == 3 and len(waits) == 2 and waits[0] == 0.0
    request = server.requests[-1]
    headers, body = request["headers"], json.loads(request["body"])
    assert request["path"] == "/v1/text-to-speech/vid_123/with-timestamps"
    assert "output_format=pcm_24000" in request["query"]
    assert headers.get("xi-api-key") == "k" and body["seed"] == 7 and body["voice_settings"]["stability"] == 0.4
    assert speech.waveform.shape[1] > 2400 and np.abs(speech.waveform).max() > 0.01
    assert [w["text"] for w in speech.words()] == ["Hello", "there"]
    assert speech.words()[1]["end"] == pytest.approx(speech.ends[-1])


def test_401_is_surfaced_at_once_with_the_provider_message():
    server = replay([(401, {}, {"detail": {"status": "invalid_api_key", "message": "Invalid API key"}})])
    try:
        with pytest.raises(tts.TTSError, match="ElevenLabs error 401: Invalid API key") as err:
            tts.synthesize("Hi", "vid", "bad", base_url=server.url, sleep=lambda s: None)
    finally:
        server.close()
    assert err.value.status == 401 and len(server.requests) == 1


def test_429_until_the_last_attempt_is_surfaced():
    busy = (429, {"retry-after": "0"}, {"detail": {"message": "quota exceeded"}})
    server = replay([busy] * 3)
    try:
        with pytest.raises(tts.TTSError, match="429: quota exceeded"):
            tts.synthesize("Hi", "vid", "k", base_url=server.url, max_attempts=3, sleep=lambda s: None)
    finally:
        server.close()
    assert len(server.requests) == 3


def test_31s_wav_windows_segments_stitch_to_31s_without_seam_errors_and_aac_48k(tmp_path):
    rate, fps, dur = 16000, 24, 31.0
    t = np.arange(int(dur * rate)) / rate
    audio = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)[None]
    wav = tmp_path / "line.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(rate)
        w.writeframes((audio[0] * 32767).astype("<i2").tobytes())
    from vibeboard.media.audio import decode_audio
    waveform, sr = decode_audio(str(wav))
    calls = []

    def render(seg, chunk):
        # a tiny "generator": every frame encodes its global output index in its pixels (so seams are checkable)
        assert abs(chunk.shape[1] - seg.frames / fps * sr) <= 1
        idx = torch.arange(seg.start_frame, seg.start_frame + seg.frames, dtype=torch.float32)
        calls.append(seg)
        return (idx / 1000.0).view(-1, 1, 1, 1).expand(-1, 16, 16, 3).clone()

    out = perf.render_from_audio(waveform, sr, fps, render, str(tmp_path / "perf.mp4"), window_s=5.0, overlap_s=0.5)
    total = round(dur * fps)
    assert out["frames"] == total and len(calls) == 7
    # the stitched frame sequence before encoding: each index exactly once, in order
    clip = perf.stitch(perf.plan_segments(dur, fps, 5.0, 0.5),
                       [render(s, perf.audio_slice(waveform, sr, s.audio_start, s.audio_end))
                        for s in perf.plan_segments(dur, fps, 5.0, 0.5)], total)
    assert torch.allclose(clip[:, 0, 0, 0] * 1000, torch.arange(total, dtype=torch.float32), atol=1e-3)
    with av.open(str(tmp_path / "perf.mp4")) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        frames = sum(1 for _ in c.decode(video=0))
        assert a.codec_context.name == "aac" and a.rate == 48000
        audio_s = float(a.duration * a.time_base)
    assert frames == total and abs(frames / fps - dur) <= 1 / fps and abs(audio_s - dur) <= 1 / fps
