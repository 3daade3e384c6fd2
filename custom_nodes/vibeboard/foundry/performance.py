"""Performances of arbitrary length: frame-rate conformance, and audio windows → generated segments → one
stitched clip with the audio muxed as AAC 48 kHz (window planning: `wan.windows`, shared with the Wan sampler).

The failure these guard against is the LivePortrait#343 one: a 25 fps driver and a 24 fps render drift apart
by a frame every second. So the driver is resampled to the *output* rate first (by timestamps, PyAV), the number
of output frames is round(duration × fps) exactly, every segment boundary is computed in output frames from that
count, and the audio is cut to the same duration when muxed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..wan.windows import context_windows  # the one home of window scheduling (the Wan sampler's too)


# ---- frame rate ------------------------------------------------------------------------------------------------
def output_frame_count(duration_s: float, fps) -> int:
    return int(round(float(duration_s) * float(Fraction(fps))))


def conform_driving_video(path: str, fps: float, width: int = 0, height: int = 0):
    """(frames [N,H,W,3] at `fps`, audio (float32 [C,S], rate) or None, duration s) with N = round(duration×fps):
    frames picked by timestamp (the nearest source frame at or before each output time)."""
    from ..media.video import load_video, probe_video
    info = probe_video(path)
    loaded = load_video(path, force_rate=fps, width=width, height=height)
    want = output_frame_count(info.duration, fps)
    frames = loaded.frames
    if frames.shape[0] < want:  # the last source frame holds to the end
        frames = torch.cat([frames, frames[-1:].expand(want - frames.shape[0], *frames.shape[1:])])
    return frames[:want], loaded.audio, info.duration


def latent_frames_for(pixel_frames: int, temporal: int = 4) -> int:
    """Wan decodes 4k+1 pixel frames from k+1 latent frames: the fewest latent frames covering `pixel_frames`."""
    return 1 + max(0, math.ceil((pixel_frames - 1) / temporal))


# ---- audio windows → segments → one clip --------------------------------------------------------------------------
@dataclass
class Segment:
    index: int
    start_frame: int      # first output frame this segment renders (overlap included)
    frames: int           # frames it renders
    keep_from: int        # frames at its head that the previous segment already owns (dropped when stitching)
    audio_start: float    # seconds
    audio_end: float


def plan_segments(duration_s: float, fps, window_s: float, overlap_s: float) -> List[Segment]:
    """Cut a clip of `duration_s` into generation windows of about `window_s` with `overlap_s` overlap, all in
    output frames so the stitched result has exactly round(duration × fps) frames."""
    total = output_frame_count(duration_s, fps)
    rate = float(Fraction(fps))
    size = max(1, int(round(window_s * rate)))
    overlap = min(size - 1, max(0, int(round(overlap_s * rate))))
    out, owned = [], 0
    for i, (start, end) in enumerate(context_windows(total, size, overlap)):
        out.append(Segment(i, start, end - start, owned - start if owned > start else 0, start / rate, end / rate))
        owned = end
    return out


def stitch(segments: Sequence[Segment], videos: Sequence[torch.Tensor], total: int,
           crossfade: bool = True) -> torch.Tensor:
    """Join rendered segments ([frames, H, W, 3] each) into exactly `total` frames: every output frame comes from
    exactly one place — a segment's own frames, or in an overlap a linear cross-fade of the two renders of that
    same frame — so nothing is duplicated or dropped at a seam."""
    first = videos[0]
    out = first.new_zeros((total, *first.shape[1:]))
    for seg, video in zip(segments, videos):
        if video.shape[0] != seg.frames:
            raise ValueError(f"segment {seg.index} rendered {video.shape[0]} frames, planned {seg.frames}")
        n = seg.keep_from
        if n and crossfade:
            w = (torch.arange(n, dtype=video.dtype) + 1) / (n + 1)
            w = w.view(n, *([1] * (video.dim() - 1)))
            region = out[seg.start_frame:seg.start_frame + n]
            out[seg.start_frame:seg.start_frame + n] = video[:n] * w + region * (1 - w)
        out[seg.start_frame + n:seg.start_frame + seg.frames] = video[n:]
    return out


def audio_slice(waveform: np.ndarray, rate: int, start_s: float, end_s: float) -> np.ndarray:
    a, b = int(round(start_s * rate)), int(round(end_s * rate))
    part = waveform[:, a:b]
    if part.shape[1] < b - a:
        part = np.pad(part, ((0, 0), (0, b - a - part.shape[1])))
    return part


def to_48k(waveform: np.ndarray, rate: int) -> Tuple[np.ndarray, int]:
    """Resample to 48 kHz (FFmpeg's resampler through PyAV), exactly round(N·48000/rate) samples."""
    from ..media.audio import resample
    return resample(np.ascontiguousarray(waveform, dtype=np.float32), rate, 48000), 48000


def render_from_audio(waveform: np.ndarray, rate: int, fps, render: Callable[[Segment, np.ndarray], torch.Tensor],
                      out_path: str, window_s: float = 5.0, overlap_s: float = 0.5,
                      on_segment: Optional[Callable[[int, int], None]] = None) -> dict:
    """The blueprint's "Audio + Image → MP4": plan windows over the audio, render each segment from its audio
    window (`render(segment, audio_chunk) -> [frames,H,W,3]`), stitch, mux the whole audio as AAC 48 kHz."""
    from ..media.video import write_video
    duration = waveform.shape[1] / float(rate)
    segments = plan_segments(duration, fps, window_s, overlap_s)
    videos = []
    for seg in segments:
        videos.append(render(seg, audio_slice(waveform, rate, seg.audio_start, seg.audio_end)))
        if on_segment is not None:
            on_segment(seg.index + 1, len(segments))
    total = output_frame_count(duration, fps)
    clip = stitch(segments, videos, total)
    audio48 = to_48k(waveform, rate)
    summary = write_video(out_path, clip, fps, audio=audio48)
    return {"path": out_path, "frames": total, "segments": [s.__dict__ for s in segments], "summary": summary}
