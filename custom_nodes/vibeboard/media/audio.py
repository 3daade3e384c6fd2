"""Audio through PyAV: decode a time span of a file's audio, write WAV/FLAC, mux AAC next to video.

Waveforms here are numpy float32 `[C, N]` (channels first, -1..1); the nodes convert to and from
ComfyUI's AUDIO dict `{"waveform": torch [B, C, N], "sample_rate": int}`.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Optional, Tuple

import av
import numpy as np

from ..common.runtime import NodeInputError
from .files import atomic_output

# Sample rates the AAC encoder accepts; anything else is resampled to 48 kHz before muxing.
AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)
_CHUNK = 4096


def empty_audio(sample_rate: int = 44100, channels: int = 1) -> dict:
    """The AUDIO a video without sound loads as: zero samples (savers skip it), never None."""
    import torch
    return {"waveform": torch.zeros((1, channels, 0), dtype=torch.float32), "sample_rate": int(sample_rate)}


def to_audio_dict(waveform: np.ndarray, sample_rate: int) -> dict:
    import torch
    return {"waveform": torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32)).unsqueeze(0),
            "sample_rate": int(sample_rate)}


def audio_from_input(audio, node: str, input_name: str = "audio") -> Tuple[np.ndarray, int]:
    """Check an AUDIO input and return (float32 [C, N], sample_rate). Batch > 1: the first item is used."""
    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise NodeInputError(node, input_name, "expected AUDIO {'waveform': [B, C, N], 'sample_rate': int}")
    waveform = audio["waveform"]
    if hasattr(waveform, "detach"):
        waveform = waveform.detach().to("cpu").float().numpy()
    waveform = np.asarray(waveform, dtype=np.float32)
    if waveform.ndim == 3:
        if waveform.shape[0] < 1:
            raise NodeInputError(node, input_name, "waveform batch is empty")
        waveform = waveform[0]
    if waveform.ndim != 2 or waveform.shape[0] < 1:
        raise NodeInputError(node, input_name, f"waveform must be [B, C, N]; got shape {tuple(waveform.shape)}")
    if not np.isfinite(waveform).all():
        raise NodeInputError(node, input_name, "waveform contains NaN or infinite values")
    try:
        sample_rate = int(audio["sample_rate"])
    except (TypeError, ValueError):
        raise NodeInputError(node, input_name, f"sample_rate {audio['sample_rate']!r} is not a number") from None
    if sample_rate <= 0:
        raise NodeInputError(node, input_name, f"sample_rate must be positive; got {sample_rate}")
    return waveform, sample_rate


def _layout_name(channels: int) -> str:
    return {1: "mono", 2: "stereo"}.get(channels, "stereo")


def decode_audio(path: str, start: float = 0.0, duration: Optional[float] = None
                 ) -> Optional[Tuple[np.ndarray, int]]:
    """Audio of `path` from `start` seconds (the stream clock) for `duration` seconds, as float32 [C, N].

    Returns None when the file has no audio stream. With a duration the result is exactly
    round(duration * rate) samples: gaps (audio starting late, ending early) are filled with silence, so
    the track stays in sync with the frames it came with.
    """
    with av.open(path) as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        rate = int(stream.codec_context.sample_rate or stream.rate)
        channels = max(int(stream.codec_context.channels or 1), 1)
        total = None if duration is None else max(int(round(duration * rate)), 0)
        pieces = []  # (offset in samples from `start`, float32 [C, n])
        stream_end = None
        if stream.duration is not None and stream.time_base:
            stream_end = float((stream.duration + (stream.start_time or 0)) * stream.time_base)
        # Seek 0.2 s early: codecs with overlapping windows (AAC, MP3) need a packet or two to warm up.
        # Near the beginning, decode from the top instead: a seek there skips the encoder-delay trim.
        if start > 0.2 and stream.time_base:
            container.seek(int((start - 0.2) / stream.time_base), stream=stream)
        first = int(round(start * rate))  # sample index of `start` on the stream clock
        resampler = av.AudioResampler(format="fltp")  # keeps rate and layout, only unpacks/floats
        running = None
        for frame in container.decode(stream):
            when = frame.time if frame.time is not None else running
            if when is None:
                when = start
            running = when + frame.samples / rate
            parts = [out.to_ndarray() for out in resampler.resample(frame)]
            if not parts:
                continue
            samples = np.concatenate(parts, axis=1).astype(np.float32, copy=False)
            if samples.shape[0] != channels:
                channels = samples.shape[0]
            offset = int(round(when * rate)) - first  # both rounded alone: no 1-sample gaps between frames
            if offset + samples.shape[1] <= 0:
                continue
            if total is not None and offset >= total:
                break
            pieces.append((offset, samples))
    if total is None:
        total = max((off + s.shape[1] for off, s in pieces), default=0)
        if stream_end is not None:  # the decoder returns the encoder's tail padding too
            total = min(total, max(int(round(stream_end * rate)) - first, 0))
    out = np.zeros((channels, total), dtype=np.float32)
    for offset, samples in pieces:
        lo, hi = max(offset, 0), min(offset + samples.shape[1], total)
        if hi > lo and samples.shape[0] == channels:
            out[:, lo:hi] = samples[:, lo - offset:hi - offset]
    return out, rate


def fit_length(waveform: np.ndarray, samples: int) -> np.ndarray:
    """Trim or pad with silence to exactly `samples` samples."""
    if waveform.shape[1] >= samples:
        return waveform[:, :samples]
    pad = np.zeros((waveform.shape[0], samples - waveform.shape[1]), dtype=np.float32)
    return np.concatenate([waveform, pad], axis=1)


class AacTrack:
    """An AAC stream in an open output container, fed in step with the video frames (good interleaving).

    `finish(duration)` ends the track at exactly the video's duration: longer audio is cut, shorter audio
    is padded with silence. More than two channels keep the first two; rates the AAC encoder refuses are
    resampled to 48 kHz.
    """

    def __init__(self, container, waveform: np.ndarray, sample_rate: int, bit_rate: int = 192_000):
        channels = min(waveform.shape[0], 2)
        self.layout = _layout_name(channels)
        self.source_rate = int(sample_rate)
        self.waveform = np.ascontiguousarray(waveform[:channels], dtype=np.float32)
        out_rate = self.source_rate if self.source_rate in AAC_RATES else 48000
        self.stream = container.add_stream("aac", rate=out_rate)
        self.stream.layout = self.layout
        self.stream.bit_rate = bit_rate
        self.resampler = None
        if out_rate != self.source_rate:
            self.resampler = av.AudioResampler(format="fltp", layout=self.layout, rate=out_rate)
        self.container = container
        self.written = 0

    def _encode(self, frame) -> None:
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def write_until(self, seconds) -> None:
        """Encode the samples up to `seconds` (silence past the end of the waveform)."""
        end = int(round(seconds * self.source_rate))
        while self.written < end:
            stop = min(self.written + _CHUNK, end)
            block = fit_length(self.waveform[:, self.written:stop], stop - self.written)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block), format="fltp", layout=self.layout)
            frame.sample_rate = self.source_rate
            frame.pts = self.written
            frame.time_base = Fraction(1, self.source_rate)
            self.written = stop
            if self.resampler is None:
                self._encode(frame)
            else:
                for out in self.resampler.resample(frame):
                    self._encode(out)

    def finish(self, duration) -> None:
        self.write_until(duration)
        if self.resampler is not None:
            for out in self.resampler.resample(None):
                self._encode(out)
        self._encode(None)


AUDIO_FORMATS = {"flac": ("flac", "flac"), "wav": ("wav", "pcm_s16le")}


def save_audio_file(path: str, waveform: np.ndarray, sample_rate: int, fmt: str = "flac") -> str:
    """Write 16-bit WAV or FLAC (values clipped to -1..1). Written to a temporary name, renamed on success."""
    if fmt not in AUDIO_FORMATS:
        raise ValueError(f"unknown audio format {fmt!r}; choose one of {sorted(AUDIO_FORMATS)}")
    container_format, codec = AUDIO_FORMATS[fmt]
    channels = waveform.shape[0]
    layout = _layout_name(channels) if channels <= 2 else av.AudioLayout(channels).name
    pcm = (np.clip(waveform, -1.0, 1.0) * 32767.0).round().astype(np.int16)
    with atomic_output(path) as tmp:
        with av.open(tmp, "w", format=container_format) as container:
            stream = container.add_stream(codec, rate=int(sample_rate))
            stream.layout = layout
            stream.format = "s16"
            for start in range(0, pcm.shape[1], _CHUNK):
                block = np.ascontiguousarray(pcm[:, start:start + _CHUNK].T).reshape(1, -1)  # interleaved
                frame = av.AudioFrame.from_ndarray(block, format="s16", layout=layout)
                frame.sample_rate = int(sample_rate)
                frame.pts = start
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
    return path


def resample(wave: np.ndarray, source_rate: int, rate: int) -> np.ndarray:
    """float32 [C, N] from `source_rate` to `rate` with FFmpeg's resampler (PyAV)."""
    if source_rate == rate or wave.shape[1] == 0:
        return wave
    channels = wave.shape[0]
    layout = "mono" if channels == 1 else "stereo"
    wave = wave[:2] if channels > 2 else wave
    resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave, dtype=np.float32), format="fltp", layout=layout)
    frame.sample_rate, frame.pts, frame.time_base = source_rate, 0, Fraction(1, source_rate)
    parts = [o.to_ndarray() for o in resampler.resample(frame)] + [o.to_ndarray() for o in resampler.resample(None)]
    out = np.concatenate(parts, axis=1) if parts else np.zeros((wave.shape[0], 0), np.float32)
    return fit_length(out.astype(np.float32), int(round(wave.shape[1] * rate / source_rate)))
