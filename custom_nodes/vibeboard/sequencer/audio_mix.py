"""The timeline's sound: place each audio clip at its record time, per-clip/per-track gain and fades, music
ducked under dialogue (speech found by silero-vad), summed to stereo.

Settings live in OTIO metadata so they travel with the cut:
  track.metadata["vibeboard"] = {"gain_db": -3.0, "duck_under": "A1 Dialogue", "duck_db": 12.0}
  clip.metadata["vibeboard"]  = {..recipe.., "gain_db": 0.0, "fade_in": 0.5, "fade_out": 1.0}   (seconds)
Video clips' own sound (sync sound from the generator) plays on the record range of the clip unless the
video track says {"use_clip_audio": false}.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import av
import numpy as np
import opentimelineio as otio

from ..media import audio as audio_io
from . import timeline as tl

VAD_RATE = 16000


def db_to_gain(db: float) -> float:
    return float(10.0 ** (db / 20.0))


resample = audio_io.resample  # one home: media/audio.py


def to_stereo(wave: np.ndarray) -> np.ndarray:
    if wave.shape[0] == 1:
        return np.concatenate([wave, wave], axis=0)
    return wave[:2]


def fade(wave: np.ndarray, rate: int, fade_in: float = 0.0, fade_out: float = 0.0) -> np.ndarray:
    """Linear-in-amplitude fades over the first/last seconds (a copy)."""
    out = wave.copy()
    n = out.shape[1]
    k = min(int(round(fade_in * rate)), n)
    if k > 0:
        out[:, :k] *= np.linspace(0.0, 1.0, k, endpoint=False, dtype=np.float32)
    k = min(int(round(fade_out * rate)), n)
    if k > 0:
        out[:, n - k:] *= np.linspace(1.0, 0.0, k, endpoint=True, dtype=np.float32)
    return out


def speech_segments(wave: np.ndarray, rate: int, threshold: float = 0.5) -> List[Tuple[float, float]]:
    """(start, end) seconds of speech in `wave`, by silero-vad (its model ships inside the wheel)."""
    try:
        import torch
        threads = torch.get_num_threads()
        from silero_vad import get_speech_timestamps, load_silero_vad
        # silero_vad sets the whole process to one torch thread at import; every other model would pay for it.
        torch.set_num_threads(threads)
    except ImportError as exc:
        raise RuntimeError("speech detection needs silero-vad: pip install vibeboard[sequencer]") from exc
    mono = resample(wave.mean(axis=0, keepdims=True), rate, VAD_RATE)[0]
    model = _vad_model(load_silero_vad)
    stamps = get_speech_timestamps(torch.from_numpy(np.ascontiguousarray(mono)), model, threshold=threshold,
                                   sampling_rate=VAD_RATE, return_seconds=True)
    return [(float(s["start"]), float(s["end"])) for s in stamps]


_VAD = {}


def _vad_model(loader):
    if "model" not in _VAD:
        _VAD["model"] = loader()
    return _VAD["model"]


def duck_envelope(segments, samples: int, rate: int, depth_db: float, attack: float = 0.08,
                  release: float = 0.35) -> np.ndarray:
    """Gain per sample: 1 outside speech, -depth_db inside, ramping down over `attack` s before each segment
    and back up over `release` s after it."""
    low = db_to_gain(-abs(depth_db))
    depth = np.zeros(samples, dtype=np.float32)  # 0 = full level, 1 = ducked
    for start, end in segments:
        a, b = int(start * rate), int(end * rate)
        depth[max(a, 0):min(b, samples)] = 1.0
        ramp_in = int(attack * rate)
        lo = max(a - ramp_in, 0)
        if a > lo:
            depth[lo:a] = np.maximum(depth[lo:a], np.linspace(0, 1, a - lo, endpoint=False))
        ramp_out = int(release * rate)
        hi = min(b + ramp_out, samples)
        if hi > b:
            depth[b:hi] = np.maximum(depth[b:hi], np.linspace(1, 0, hi - b, endpoint=False))
    return 1.0 - depth * (1.0 - low)


def _clip_audio(clip, fps: float, rate: int) -> Optional[np.ndarray]:
    path = tl.media_path(clip)
    if not path:
        return None
    src = clip.source_range
    try:
        decoded = audio_io.decode_audio(path, start=src.start_time.value / fps, duration=src.duration.value / fps)
    except (av.error.FFmpegError, OSError) as exc:
        raise ValueError(f"clip '{clip.name}': cannot read audio of '{path}': {exc}") from None
    if decoded is None:
        return None
    wave = to_stereo(resample(decoded[0], decoded[1], rate))
    meta = tl.recipe_of(clip)
    wave = fade(wave, rate, float(meta.get("fade_in", 0.0)), float(meta.get("fade_out", 0.0)))
    return wave * db_to_gain(float(meta.get("gain_db", 0.0)))


def track_audio(track_, fps: float, rate: int, samples: int) -> Optional[np.ndarray]:
    """The track's clips placed at their record positions (stereo [2, samples]), None if it has no sound."""
    if track_.kind == otio.schema.TrackKind.Video and not track_.metadata.get("vibeboard", {}).get(
            "use_clip_audio", True):
        return None
    out = np.zeros((2, samples), dtype=np.float32)
    found = False
    for clip in track_.find_clips():
        wave = _clip_audio(clip, fps, rate)
        if wave is None:
            continue
        found = True
        start = int(round(track_.range_of_child(clip).start_time.value / fps * rate))
        stop = min(start + wave.shape[1], samples)
        if stop > start:
            out[:, start:stop] += wave[:, :stop - start]
    if not found:
        return None
    return out * db_to_gain(float(track_.metadata.get("vibeboard", {}).get("gain_db", 0.0)))


def mix_timeline(timeline, rate: int = 48000, report: Optional[dict] = None) -> Optional[np.ndarray]:
    """Stereo float32 [2, N] for the whole cut (N = duration at `rate`), or None when nothing has sound."""
    fps = tl.timeline_rate(timeline)
    samples = int(round(tl.duration_frames(timeline) / fps * rate))
    stems = {}
    for track_ in timeline.tracks:
        wave = track_audio(track_, fps, rate, samples)
        if wave is not None:
            stems[track_.name] = wave
    if not stems:
        return None
    for track_ in timeline.tracks:
        settings = track_.metadata.get("vibeboard", {})
        under = settings.get("duck_under")
        if track_.name in stems and under in stems:
            segments = speech_segments(stems[under], rate)
            stems[track_.name] = stems[track_.name] * duck_envelope(segments, samples, rate,
                                                                    float(settings.get("duck_db", 12.0)))
            if report is not None:
                report.setdefault("ducking", {})[track_.name] = {"under": under, "speech_segments": segments}
    return sum(stems.values()).astype(np.float32)
