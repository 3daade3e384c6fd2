"""Loudness: measure (PyAV's ebur128 filter for integrated / LRA / true peak, pyloudnorm as a second meter),
normalise to a delivery preset, and report.

Presets (sources in docs/sequencer.md):
  ebu_r128        −23 LUFS integrated, true peak ≤ −1 dBTP (EBU R128)
  streaming       −14 LUFS, ≤ −1 dBTP (YouTube/Spotify-style online)
  streaming_16    −16 LUFS, ≤ −1 dBTP (Apple/podcast-style online)
  netflix         −27 LKFS ±2 *dialogue-gated*, ≤ −2 dBTP (−24 LKFS integrated when under 15 % is dialogue).
                  Netflix measures with Dolby Dialogue Intelligence; here the dialogue gate is silero-vad speech
                  segments (an approximation, said in the report).
Normalising is a gain to the target, then — only if the true peak would pass the ceiling — a 4× oversampled
soft-knee peak limiter and a short gain re-trim, repeated until both hold (≤ 4 rounds).
"""
from __future__ import annotations

from fractions import Fraction
from typing import Optional

import av
import numpy as np

from . import audio_mix

PRESETS = {
    "ebu_r128": {"target": -23.0, "tolerance": 0.5, "true_peak": -1.0, "gate": "integrated"},
    "streaming": {"target": -14.0, "tolerance": 1.0, "true_peak": -1.0, "gate": "integrated"},
    "streaming_16": {"target": -16.0, "tolerance": 1.0, "true_peak": -1.0, "gate": "integrated"},
    "netflix": {"target": -27.0, "tolerance": 2.0, "true_peak": -2.0, "gate": "dialogue"},
}


def _layout(channels: int) -> str:
    return "mono" if channels == 1 else "stereo"


def ebur128(wave: np.ndarray, rate: int) -> dict:
    """Integrated loudness (LUFS), loudness range (LU) and true peak (dBTP) from FFmpeg's ebur128 filter."""
    wave = np.ascontiguousarray(wave[:2], dtype=np.float32)
    layout = _layout(wave.shape[0])
    graph = av.filter.Graph()
    src = graph.add_abuffer(format="fltp", sample_rate=rate, layout=layout, time_base=Fraction(1, rate))
    meter = graph.add("ebur128", "peak=true:metadata=1")
    sink = graph.add("abuffersink")
    src.link_to(meter)
    meter.link_to(sink)
    graph.configure()
    last = {}

    def drain():
        nonlocal last
        while True:
            try:
                frame = graph.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                return
            if frame.metadata:
                last = dict(frame.metadata)
    block = rate // 10
    for start in range(0, wave.shape[1], block):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[:, start:start + block]), format="fltp",
                                           layout=layout)
        frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
        graph.push(frame)
        drain()
    graph.push(None)
    drain()
    peak = float(last.get("lavfi.r128.true_peak", 0.0))
    return {"integrated_lufs": float(last.get("lavfi.r128.I", "-inf")),
            "loudness_range_lu": float(last.get("lavfi.r128.LRA", 0.0)),
            "true_peak_dbtp": float(20.0 * np.log10(peak)) if peak > 0 else float("-inf")}


def pyloudnorm_lufs(wave: np.ndarray, rate: int) -> float:
    try:
        import pyloudnorm
    except ImportError as exc:
        raise RuntimeError("loudness needs pyloudnorm: pip install vibeboard[sequencer]") from exc
    data = wave.T.astype(np.float64)
    if data.shape[0] < int(0.4 * rate):  # shorter than one gating block
        return float("-inf")
    return float(pyloudnorm.Meter(rate).integrated_loudness(data))


def dialogue_only(wave: np.ndarray, rate: int, segments) -> np.ndarray:
    """The speech parts of `wave` joined (what a dialogue-gated meter listens to)."""
    parts = [wave[:, int(a * rate):int(b * rate)] for a, b in segments]
    parts = [p for p in parts if p.shape[1]]
    return np.concatenate(parts, axis=1) if parts else wave[:, :0]


def measure(wave: np.ndarray, rate: int, gate: str = "integrated", dialogue: Optional[np.ndarray] = None,
            segments=None) -> dict:
    """Full report of `wave`. With gate="dialogue" the loudness is measured over the speech `segments`
    ((start, end) seconds; found by silero-vad in `dialogue`, the dialogue stem, or in `wave` when None)."""
    report = ebur128(wave, rate)
    report["pyloudnorm_lufs"] = pyloudnorm_lufs(wave, rate)
    report["duration_s"] = wave.shape[1] / rate
    if gate == "dialogue":
        if segments is None:
            segments = audio_mix.speech_segments(dialogue if dialogue is not None else wave, rate)
        speech = dialogue_only(wave, rate, segments)
        report["speech_segments"] = segments
        report["speech_fraction"] = speech.shape[1] / max(wave.shape[1], 1)
        report["dialogue_gated_lufs"] = ebur128(speech, rate)["integrated_lufs"] if speech.shape[1] else None
        report["dialogue_gate"] = "silero-vad speech segments (approximates Dolby Dialogue Intelligence)"
    return report


def true_peak_limit(wave: np.ndarray, ceiling_db: float, rate: int = 48000, oversample: int = 4) -> np.ndarray:
    """Scale down the samples around inter-sample peaks above `ceiling_db` (gain from a 4× oversampled
    envelope, smoothed over 5 ms so the limiter does not click)."""
    from scipy.signal import resample_poly
    ceiling = audio_mix.db_to_gain(ceiling_db)
    up = np.abs(resample_poly(wave, oversample, 1, axis=1)).max(axis=0)
    envelope = up[: wave.shape[1] * oversample].reshape(-1, oversample).max(axis=1)
    gain = np.minimum(1.0, ceiling / np.maximum(envelope, 1e-12))
    width = max(int(0.005 * rate), 1)
    # A running minimum then a moving average: the gain reaches its floor before the peak, not at it.
    padded = np.pad(gain, (width, width), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * width + 1)
    floor = windows.min(axis=1)
    smooth = np.convolve(np.pad(floor, (width, width), mode="edge"), np.ones(2 * width + 1) / (2 * width + 1),
                         mode="valid")
    return (wave * smooth[None, : wave.shape[1]]).astype(np.float32)


def normalize(wave: np.ndarray, rate: int, preset: str = "ebu_r128", dialogue: Optional[np.ndarray] = None):
    """(normalised wave, report). The report holds the preset, the measurements before and after, the gain
    applied and whether the result is within the preset's tolerance and true-peak ceiling."""
    if preset not in PRESETS:
        raise ValueError(f"unknown loudness preset '{preset}'; choose one of {', '.join(PRESETS)}")
    spec = PRESETS[preset]
    segments = None
    if spec["gate"] == "dialogue":
        segments = audio_mix.speech_segments(dialogue if dialogue is not None else wave, rate)
    before = measure(wave, rate, spec["gate"], segments=segments)
    if preset == "netflix" and before.get("speech_fraction", 1.0) < 0.15:
        # Netflix: programmes with under 15 % dialogue are measured ungated at −24 LKFS ±2 instead
        spec = dict(spec, target=-24.0, gate="integrated",
                    note=f"dialogue is {before['speech_fraction']:.0%} of the programme (< 15 %): −24 LKFS integrated")
    key = "dialogue_gated_lufs" if spec["gate"] == "dialogue" else "integrated_lufs"
    if before.get(key) is None or not np.isfinite(before[key]) or before[key] <= -70.0:  # -70 = the meter's floor
        raise ValueError("the audio is silent" + (" or has no speech to gate on" if spec["gate"] == "dialogue"
                                                  else "") + f": cannot normalise to {preset}")
    out, total_gain, limited = wave.astype(np.float32), 0.0, False
    current = before
    for _ in range(4):
        gain_db = spec["target"] - current[key]
        out = out * audio_mix.db_to_gain(gain_db)
        total_gain += gain_db
        current = measure(out, rate, spec["gate"], segments=segments)
        if current["true_peak_dbtp"] > spec["true_peak"]:
            out = true_peak_limit(out, spec["true_peak"] - 0.3, rate)
            limited = True
            current = measure(out, rate, spec["gate"], segments=segments)
        if abs(current[key] - spec["target"]) <= 0.05 and current["true_peak_dbtp"] <= spec["true_peak"]:
            break
    report = {"preset": preset, **spec, "measured_key": key, "before": before, "after": current,
              "gain_db": total_gain, "limited": limited,
              "passes": bool(abs(current[key] - spec["target"]) <= spec["tolerance"]
                             and current["true_peak_dbtp"] <= spec["true_peak"])}
    return out, report
