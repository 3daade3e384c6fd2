"""Captions from the script's dialogue, timed to the audio, checked against the Netflix Timed Text Style Guide
rules, written as SRT / WebVTT (pysubs2) and TTML (pycaption), and read back.

Timing comes from (in order of preference) the TTS engine's own per-line timestamps, or the speech segments
silero-vad finds in the dialogue audio, assigned to the script lines in order (lines share a segment run in
proportion to their length). Forced alignment with pocketsphinx was tried and dropped: it refuses any word
outside its dictionary and failed on espeak-ng speech (docs/sequencer.md).

Rules (RULES): ≤ 42 characters a line, ≤ 2 lines, ≤ 17 characters per second, ≥ 2 frames between events,
5/6 s ≤ duration ≤ 7 s. Times are whole milliseconds on frame boundaries so SRT/VTT/TTML round trips exactly.
"""
from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

RULES = {"max_chars_per_line": 42, "max_lines": 2, "max_cps": 17.0, "min_gap_frames": 2,
         "min_duration": 5 / 6, "max_duration": 7.0}


@dataclass
class Event:
    start: float  # seconds
    end: float
    lines: List[str]
    speaker: str = ""

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def chars(self) -> int:
        return sum(len(line) for line in self.lines)


class CaptionError(ValueError):
    """Dialogue and audio that cannot be made into legal captions."""


def break_lines(text: str, width: int = RULES["max_chars_per_line"]) -> List[List[str]]:
    """Split `text` into events of ≤ 2 lines ≤ `width` characters, breaking at spaces, balancing the two lines
    (a bottom-heavy pyramid reads best) and preferring breaks after punctuation."""
    words = " ".join(text.split())
    if not words:
        return []
    chunks, current = [], ""
    for sentence in _sentences(words):
        candidate = (current + " " + sentence).strip()
        if len(candidate) <= 2 * width and _fits_two_lines(candidate, width):
            current = candidate
        else:
            if current:
                chunks.append(current)
            current = sentence
            if not _fits_two_lines(sentence, width):
                pieces = _split_long(sentence, width)
                chunks.extend(pieces[:-1])
                current = pieces[-1]
    if current:
        chunks.append(current)
    return [_two_lines(chunk, width) for chunk in chunks]


def _sentences(text: str) -> List[str]:
    out, start = [], 0
    for i, ch in enumerate(text):
        if ch in ".?!" and (i + 1 == len(text) or text[i + 1] == " "):
            out.append(text[start:i + 1].strip())
            start = i + 1
    if text[start:].strip():
        out.append(text[start:].strip())
    return out


def _split_long(sentence: str, width: int) -> List[str]:
    """A sentence longer than two lines as the fewest pieces of about equal length that each fit two lines
    (no one-word orphan at the end)."""
    words = sentence.split(" ")
    for count in range(max(math.ceil(len(sentence) / (2 * width)), 1), len(words) + 1):
        target = len(sentence) / count
        pieces, current = [], ""
        for word in words:
            candidate = (current + " " + word).strip()
            if current and len(candidate) > target + width / 4 and len(pieces) < count - 1:
                pieces.append(current)
                current = word
            else:
                current = candidate
        pieces.append(current)
        if all(_fits_two_lines(p, width) for p in pieces):
            return pieces
    return textwrap.wrap(sentence, width=width, break_long_words=True) or [sentence]


def _fits_two_lines(text: str, width: int) -> bool:
    return len(_two_lines(text, width)) <= 2 and all(len(l) <= width for l in _two_lines(text, width))


def _two_lines(text: str, width: int) -> List[str]:
    if len(text) <= width:
        return [text]
    words = text.split(" ")
    best = None
    for i in range(1, len(words)):
        top, bottom = " ".join(words[:i]), " ".join(words[i:])
        if len(top) > width or len(bottom) > width:
            continue
        score = abs(len(bottom) - len(top)) - (8 if top[-1] in ",.;:?!" else 0) + (2 if len(top) > len(bottom)
                                                                                     else 0)
        if best is None or score < best[0]:
            best = (score, [top, bottom])
    return best[1] if best else textwrap.wrap(text, width=width, break_long_words=True)


def _snap(seconds: float, fps: float) -> float:
    """To the nearest frame boundary, then to whole milliseconds."""
    return round(round(seconds * fps) / fps, 3)


def assign_lines(lines: Sequence[str], segments: Sequence[Tuple[float, float]]) -> List[Tuple[float, float]]:
    """One (start, end) per script line from speech segments found in the audio.

    Equal counts: line i gets segment i. Otherwise the speech timeline (segments joined) is shared among the
    lines in proportion to their characters and each share is mapped back onto real time."""
    if not segments:
        raise CaptionError("no speech found in the dialogue audio to time the captions against")
    if len(segments) == len(lines):
        return [tuple(s) for s in segments]
    total_speech = sum(b - a for a, b in segments)
    weights = [max(len(l), 1) for l in lines]
    bounds, acc = [0.0], 0
    for w in weights:
        acc += w
        bounds.append(total_speech * acc / sum(weights))

    def to_time(x: float) -> float:
        for a, b in segments:
            if x <= b - a + 1e-9:
                return a + x
            x -= b - a
        return segments[-1][1]
    return [(to_time(bounds[i]), to_time(bounds[i + 1])) for i in range(len(lines))]


def build_events(lines: Sequence[str], spans: Sequence[Tuple[float, float]], fps: float = 24.0,
                 speakers: Optional[Sequence[str]] = None, total: Optional[float] = None) -> List[Event]:
    """Legal caption events for script `lines` spoken during `spans` (seconds). `total` = programme length."""
    if len(lines) != len(spans):
        raise CaptionError(f"{len(lines)} dialogue lines but {len(spans)} time spans")
    events: List[Event] = []
    for index, (text, (a, b)) in enumerate(zip(lines, spans)):
        chunks = break_lines(text)
        chars = [sum(len(l) for l in c) for c in chunks]
        t = a
        for chunk, n in zip(chunks, chars):
            share = (b - a) * n / max(sum(chars), 1)
            events.append(Event(t, t + share, chunk, speakers[index] if speakers else ""))
            t += share
    gap = RULES["min_gap_frames"] / fps
    end_limit = total if total is not None else math.inf
    for i, ev in enumerate(events):  # stretch to the reading speed and minimum duration
        need = max(RULES["min_duration"], ev.chars / RULES["max_cps"])
        ev.end = min(max(ev.end, ev.start + need), ev.start + RULES["max_duration"], end_limit)
        if i + 1 < len(events) and events[i + 1].start < ev.end + gap:
            if events[i + 1].start - gap - ev.start >= need:  # room enough: end earlier, the next starts on cue
                ev.end = events[i + 1].start - gap
                continue
            # otherwise the next event waits (it is stretched in its turn); only the programme end limits this
            shift = ev.end + gap - events[i + 1].start
            events[i + 1].start += shift
            events[i + 1].end = max(events[i + 1].end, events[i + 1].start)
        if ev.end - ev.start < need:  # no room after (programme end): start earlier, into the gap before
            prev_end = events[i - 1].end if i else 0.0
            ev.start = max(prev_end + gap, ev.end - need)
    for i, ev in enumerate(events):
        ev.start, ev.end = _snap(ev.start, fps), _snap(ev.end, fps)
        if i + 1 < len(events):  # short gaps are closed to exactly the minimum (no flicker between events)
            nxt = _snap(events[i + 1].start, fps)
            if nxt - ev.end < 0.5:
                ev.end = _snap(nxt - gap, fps)
    return events


def validate(events: Sequence[Event], fps: float = 24.0) -> List[str]:
    """Every rule an event breaks, as readable problems (empty = compliant)."""
    problems = []
    gap = RULES["min_gap_frames"] / fps - 1e-3
    for i, ev in enumerate(events, start=1):
        duration = ev.end - ev.start
        if len(ev.lines) > RULES["max_lines"]:
            problems.append(f"event {i}: {len(ev.lines)} lines (max {RULES['max_lines']})")
        for line in ev.lines:
            if len(line) > RULES["max_chars_per_line"]:
                problems.append(f"event {i}: line of {len(line)} characters (max 42): '{line}'")
        if duration < RULES["min_duration"] - 1e-3:
            problems.append(f"event {i}: {duration:.3f} s is shorter than 5/6 s")
        if duration > RULES["max_duration"] + 1e-3:
            problems.append(f"event {i}: {duration:.3f} s is longer than 7 s")
        if duration > 0 and ev.chars / duration > RULES["max_cps"] + 1e-6:
            problems.append(f"event {i}: {ev.chars / duration:.1f} characters per second (max 17)")
        if i < len(events) and events[i].start - ev.end < gap:
            problems.append(f"event {i}: gap to the next event is {(events[i].start - ev.end) * fps:.2f} frames "
                            "(min 2)")
    return problems


# --- files ----------------------------------------------------------------------------------------------------
def _ssa(events: Sequence[Event]):
    import pysubs2
    subs = pysubs2.SSAFile()
    for ev in events:
        subs.append(pysubs2.SSAEvent(start=int(round(ev.start * 1000)), end=int(round(ev.end * 1000)),
                                     text=ev.text.replace("\n", "\\N"), name=ev.speaker))
    return subs


def to_text(events: Sequence[Event], fmt: str) -> str:
    """`fmt` = srt | vtt | ttml."""
    if fmt in ("srt", "vtt"):
        try:
            return _ssa(events).to_string(fmt)
        except ImportError as exc:
            raise RuntimeError("captions need pysubs2: pip install vibeboard[sequencer]") from exc
    if fmt == "ttml":
        from pycaption import Caption, CaptionNode, CaptionSet, DFXPWriter
        from pycaption.base import CaptionList
        captions = []
        for ev in events:
            nodes = []
            for j, line in enumerate(ev.lines):
                if j:
                    nodes.append(CaptionNode.create_break())
                nodes.append(CaptionNode.create_text(line))
            captions.append(Caption(int(round(ev.start * 1e6)), int(round(ev.end * 1e6)), nodes))
        return DFXPWriter().write(CaptionSet({"en": CaptionList(captions)}))
    raise CaptionError(f"unknown caption format '{fmt}'; choose srt, vtt or ttml")


def parse(text: str, fmt: str) -> List[Event]:
    """Read captions back (pysubs2 for SRT/VTT, pycaption for TTML)."""
    if fmt in ("srt", "vtt"):
        import pysubs2
        subs = pysubs2.SSAFile.from_string(text, format_=fmt)
        return [Event(e.start / 1000, e.end / 1000, e.plaintext.split("\n")) for e in subs]
    if fmt == "ttml":
        import warnings
        from pycaption import DFXPReader
        with warnings.catch_warnings():  # pycaption parses with BeautifulSoup's HTML parser and says so
            warnings.simplefilter("ignore")
            caption_set = DFXPReader().read(text)
        out = []
        for cap in caption_set.get_captions(caption_set.get_languages()[0]):
            lines, current = [], ""
            for node in cap.nodes:
                if node.type_ == node.BREAK:
                    lines.append(current)
                    current = ""
                elif node.type_ == node.TEXT:
                    current += node.content
            lines.append(current)
            out.append(Event(cap.start / 1e6, cap.end / 1e6, lines))
        return out
    raise CaptionError(f"unknown caption format '{fmt}'; choose srt, vtt or ttml")


def from_dialogue(lines: Sequence[str], dialogue_wave=None, rate: int = 48000, fps: float = 24.0,
                  tts_spans: Optional[Sequence[Tuple[float, float]]] = None, speakers=None,
                  total: Optional[float] = None) -> List[Event]:
    """Captions for script `lines`: timed by `tts_spans` when the audio came from TTS, else by silero-vad speech
    segments of `dialogue_wave` (float32 [C, N] at `rate`)."""
    lines = [l for l in lines if str(l).strip()]
    if not lines:
        raise CaptionError("no dialogue lines to caption")
    if tts_spans is None:
        if dialogue_wave is None:
            raise CaptionError("captions need either the dialogue audio or TTS timestamps")
        from .audio_mix import speech_segments
        tts_spans = assign_lines(lines, speech_segments(dialogue_wave, rate))
        total = total if total is not None else dialogue_wave.shape[1] / rate
    return build_events(lines, tts_spans, fps, speakers, total)
