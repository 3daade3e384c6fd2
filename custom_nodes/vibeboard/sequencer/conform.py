"""Render (conform) the timeline to an H.264 MP4 with PyAV: exactly duration × fps frames, audio in sync.

Frames are streamed: each clip gets its own sequential decoder, opened at the first frame the cut needs
(including the handle frames a dissolve plays), so memory stays at a couple of frames per clip. A dissolve
mixes the outgoing clip (playing on into its tail handle) with the incoming one (starting in its head handle)
linearly across the transition's frames. Gaps render black.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional

import numpy as np

from ..media import video as video_io
from . import audio_mix
from . import timeline as tl


class ConformError(ValueError):
    """The timeline cannot be rendered (missing media, missing handles, no size)."""


@dataclass
class _Span:
    cut: tl.Cut
    first: int      # first timeline frame this clip shows (handles included)
    last: int       # last timeline frame (inclusive)


class _ClipReader:
    """Frames of one clip's media, read forward only, by timeline frame number."""

    def __init__(self, span: _Span, size):
        self.span = span
        first_source = span.cut.source_start + (span.first - span.cut.record_start)
        self.next_source = first_source
        self.frames = video_io.iter_video_frames(span.cut.path, skip_first_frames=first_source,
                                                 width=size[0], height=size[1])
        self.current = None

    def frame_at(self, t: int) -> np.ndarray:
        wanted = self.span.cut.source_start + (t - self.span.cut.record_start)
        while self.next_source <= wanted:
            got = next(self.frames, None)
            if got is None:
                raise ConformError(f"clip '{self.span.cut.name}': media '{self.span.cut.path}' ended before "
                                   f"source frame {wanted}")
            self.current = got[1]
            self.next_source += 1
        return self.current

    def close(self):
        self.frames.close()


def _spans(track_) -> List[_Span]:
    placed = tl.cuts(track_)
    spans = [_Span(c, c.record_start, c.record_start + c.duration - 1) for c in placed]
    problems = tl.check_handles(track_)
    if problems:
        raise ConformError("; ".join(problems))
    for outgoing, transition in tl.transitions(track_):
        spans[outgoing].last += int(round(transition.out_offset.value))
        spans[outgoing + 1].first -= int(round(transition.in_offset.value))
    for span in spans:
        if not span.cut.path:
            raise ConformError(f"clip '{span.cut.name}' has no local media file (missing or remote reference)")
    return spans


def _dissolve_weight(t: int, spans: List[_Span], index: int) -> float:
    """Weight of the incoming clip `index` at frame t while it overlaps the previous clip."""
    span = spans[index]
    overlap_start, overlap_end = span.first, spans[index - 1].last  # inclusive
    frames = overlap_end - overlap_start + 1
    return (t - overlap_start + 0.5) / frames


def frame_size(timeline, spans: List[_Span]):
    meta = timeline.metadata.get("vibeboard", {})
    width, height = int(meta.get("width") or 0), int(meta.get("height") or 0)
    if width and height:
        return width, height
    if not spans:
        raise ConformError("the timeline has no clips and no frame size")
    info = video_io.probe_video(spans[0].cut.path)
    return info.width, info.height


def burn_in(frame: np.ndarray, lines, font_px: int = 0) -> np.ndarray:
    """Caption `lines` drawn centred near the bottom of `frame` (white, black outline), a copy."""
    from PIL import Image, ImageDraw, ImageFont
    height = frame.shape[0]
    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=font_px or max(height // 16, 8))
    text = "\n".join(lines)
    outline = max(font.size // 12, 1)
    box = draw.multiline_textbbox((0, 0), text, font=font, align="center", stroke_width=outline)
    x = (frame.shape[1] - (box[2] - box[0])) / 2 - box[0]
    y = height * 0.92 - (box[3] - box[1]) - box[1]
    draw.multiline_text((x, y), text, font=font, fill=(255, 255, 255), align="center", stroke_width=outline,
                        stroke_fill=(0, 0, 0))
    return np.asarray(image)


def iter_frames(timeline, on_frame: Optional[Callable[[int, int], None]] = None,
                captions=None) -> Iterator[np.ndarray]:
    """uint8 [H, W, 3] frames of the cut, one per timeline frame; `captions` (caption events, seconds) are burnt
    in on the frames whose time falls inside them."""
    spans = _spans(tl.video_track(timeline))
    width, height = frame_size(timeline, spans)
    total = tl.duration_frames(timeline)
    readers: Dict[int, _ClipReader] = {}
    black = np.zeros((height, width, 3), dtype=np.uint8)
    try:
        for t in range(total):
            active = [i for i, s in enumerate(spans) if s.first <= t <= s.last]
            for i in list(readers):
                if i not in active:
                    readers.pop(i).close()
            for i in active:
                if i not in readers:
                    readers[i] = _ClipReader(spans[i], (width, height))
            if not active:
                frame = black
            elif len(active) == 1:
                frame = readers[active[0]].frame_at(t)
            else:  # a dissolve: the later clip fades in over the earlier one
                a, b = active[0], active[-1]
                w = _dissolve_weight(t, spans, b)
                mixed = (1.0 - w) * readers[a].frame_at(t).astype(np.float32) + w * readers[b].frame_at(t)
                frame = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
            if captions:
                now = (t + 0.5) / tl.timeline_rate(timeline)
                showing = [ev for ev in captions if ev.start <= now < ev.end]
                if showing:
                    frame = burn_in(frame, showing[0].lines)
            if frame.shape[:2] != (height, width):
                raise ConformError(f"frame {t} is {frame.shape[1]}x{frame.shape[0]}, expected {width}x{height}")
            yield frame
            if on_frame is not None:
                on_frame(t + 1, total)
    finally:
        for reader in readers.values():
            reader.close()


def render(timeline, path: str, *, crf: int = 19, preset: str = "medium", sample_rate: int = 48000,
           with_audio: bool = True, audio=None, on_frame: Optional[Callable[[int, int], None]] = None,
           captions=None) -> dict:
    """Write the cut to `path` (H.264 + AAC MP4). Returns the writer's summary plus the expected frame count.
    `audio` = (float32 [C, N], rate) replaces the timeline's own mix (e.g. a loudness-normalised one);
    `captions` (captions.Event list) are burnt into the picture."""
    fps = tl.timeline_rate(timeline)
    total = tl.duration_frames(timeline)
    if total <= 0:
        raise ConformError(f"timeline '{timeline.name}' is empty")
    if audio is None and with_audio:
        mix = audio_mix.mix_timeline(timeline, sample_rate)
        if mix is not None:
            audio = (mix, sample_rate)
    result = video_io.write_video(path, iter_frames(timeline, on_frame, captions), fps, crf=crf, preset=preset, audio=audio)
    result["expected_frames"] = total
    return result
