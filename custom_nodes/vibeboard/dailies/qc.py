"""Automatic QC of a version, reported as machine notes with frame ranges.

  black frames   FFmpeg's `blackdetect` filter through PyAV (pix_th 0.10, pic_th 0.98)
  frozen frames  consecutive frames whose mean absolute luma difference stays under 0.1 % for ≥ `freeze_s`
                 (FFmpeg's `freezedetect` attaches no metadata to frames pulled through a PyAV graph in PyAV
                 18.1 — checked — so the same measure is computed here)
  A/V offset     a clap mark: the first white flash frame against the first audio onset (a blip); reported in
                 frames, positive = sound late
  loudness       integrated LUFS and true peak (ebur128), flagged above −1 dBTP
  flicker        frame-to-frame luma swings that reverse direction (a generator's temporal flicker)
  focus          the VFX Suite focus inspection (vfx/focus_inspect.py) on a subsample; its warnings become notes
"""
from __future__ import annotations

from typing import Iterable, List, Optional

import av
import numpy as np

from ..media import audio as audio_io
from ..media import video as video_io


def _luma(rgb: np.ndarray) -> np.ndarray:
    return (0.2126 * rgb[..., 0] + 0.7152 * rgb[..., 1] + 0.0722 * rgb[..., 2]) / 255.0


class BlackDetector:
    """FFmpeg's blackdetect fed one RGB frame at a time; `ranges()` → [[first, last], ...] black frames."""

    def __init__(self, width: int, height: int, fps: float):
        self.size = (width - width % 2, height - height % 2)
        self.rate = video_io.exact_rate(fps)
        self.graph = av.filter.Graph()
        src = self.graph.add_buffer(width=self.size[0], height=self.size[1], format="yuv420p",
                                    time_base=1 / self.rate)
        detect = self.graph.add("blackdetect", "d=0:pix_th=0.10:pic_th=0.98")
        sink = self.graph.add("buffersink")
        src.link_to(detect)
        detect.link_to(sink)
        self.graph.configure()
        self.events, self.count = [], 0

    def _drain(self):
        while True:
            try:
                out = self.graph.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                return
            for key in ("lavfi.black_start", "lavfi.black_end"):
                if key in out.metadata:
                    self.events.append((key, int(round(float(out.metadata[key]) * float(self.rate)))))

    def push(self, rgb: np.ndarray) -> None:
        w, h = self.size
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[:h, :w]), format="rgb24").reformat(format="yuv420p")
        frame.pts, frame.time_base = self.count, 1 / self.rate
        self.count += 1
        self.graph.push(frame)
        self._drain()

    def ranges(self) -> List[List[int]]:
        self.graph.push(None)
        self._drain()
        out, start = [], None
        for key, frame_no in self.events:
            if key == "lavfi.black_start":
                start = frame_no
            elif start is not None:
                out.append([start, frame_no - 1])
                start = None
        if start is not None:
            out.append([start, self.count - 1])
        return out


def black_ranges(frames: Iterable[np.ndarray], fps: float) -> List[List[int]]:
    """[[first, last], ...] frames FFmpeg's blackdetect calls black."""
    detector = None
    for rgb in frames:
        detector = detector or BlackDetector(rgb.shape[1], rgb.shape[0], fps)
        detector.push(rgb)
    return detector.ranges() if detector else []


def _small_luma(rgb: np.ndarray, long_side: int = 256) -> np.ndarray:
    step = max(max(rgb.shape[:2]) // long_side, 1)  # freezes are whole-picture: a subsample decides them
    return _luma(rgb[::step, ::step].astype(np.float32))


def still_flags(frames: Iterable[np.ndarray], threshold: float = 0.001) -> List[bool]:
    """Per frame: is it the same picture (mean absolute luma change < threshold) as the frame before?"""
    flags, previous = [], None
    for rgb in frames:
        luma = _small_luma(rgb)
        flags.append(previous is not None and float(np.abs(luma - previous).mean()) < threshold)
        previous = luma
    return flags


def freeze_ranges(frames: Iterable[np.ndarray], fps: float, freeze_s: float = 0.5,
                  threshold: float = 0.001, still: Optional[List[bool]] = None) -> List[List[int]]:
    """[[first, last], ...] runs of frames identical (within `threshold`) to the frame before them, lasting
    at least `freeze_s`; `first` is the frame that froze (the last moving one), as freezedetect reports."""
    still = still if still is not None else still_flags(frames, threshold)
    ranges, i = [], 1
    while i < len(still):
        if still[i]:
            j = i
            while j + 1 < len(still) and still[j + 1]:
                j += 1
            first, last = i - 1, j
            if (last - first + 1) / fps >= freeze_s:
                ranges.append([first, last])
            i = j + 1
        else:
            i += 1
    return ranges


def luma_means(frames: Iterable[np.ndarray]) -> np.ndarray:
    return np.array([float(_small_luma(f).mean()) for f in frames])


def av_offset(means: np.ndarray, fps: float, audio) -> Optional[dict]:
    """A/V offset from a clap mark (white flash frame + audio blip), or None without one. `means`: per-frame
    mean luma 0..1."""
    if audio is None or audio[0].shape[1] == 0:
        return None
    flashes = np.nonzero(np.asarray(means) > 0.9)[0]
    wave, rate = audio
    envelope = np.abs(wave).max(axis=0)
    loud = np.nonzero(envelope > max(0.25, 0.5 * envelope.max()))[0]
    if not len(flashes) or not len(loud) or envelope.max() < 0.1:
        return None
    flash_t = flashes[0] / fps
    onset_t = loud[0] / rate
    frames_off = int(round((onset_t - flash_t) * fps))
    return {"flash_frame": int(flashes[0]), "audio_onset_s": round(float(onset_t), 4), "offset_frames": frames_off}


def flicker(means: np.ndarray, threshold: float = 0.02) -> Optional[dict]:
    """Luma that jumps up and down between neighbouring frames (residual from a 5-frame moving average).
    `means`: per-frame mean luma 0..1."""
    means = np.asarray(means, dtype=np.float64)
    if len(means) < 7:
        return None
    smooth = np.convolve(np.pad(means, 2, mode="edge"), np.ones(5) / 5, mode="valid")
    residual = means - smooth
    steps = np.diff(means)
    reversals = float(np.mean(np.sign(steps[1:]) * np.sign(steps[:-1]) < 0)) if len(steps) > 1 else 0.0
    rms = float(np.sqrt(np.mean(residual ** 2)))
    return {"luma_residual_rms": round(rms, 5), "reversal_rate": round(reversals, 3),
            "flicker": bool(rms > threshold and reversals > 0.5)}


FOCUS_FRAMES = 12


def inspect_version(path: str, shot: str = "shot", focus: bool = True, freeze_s: float = 0.5) -> dict:
    """QC report of a video file: {"notes": [{kind, start_frame, end_frame, text}], measurements...}.
    One decoding pass; memory holds a frame, a small luma image and the ≤ 12 frames kept for focus."""
    info = video_io.probe_video(path)
    fps = float(info.frame_rate)
    step = max(int(info.frame_count or 1) // FOCUS_FRAMES, 1)
    black, still, means, sampled, previous, count = None, [], [], [], None, 0
    for _, rgb in video_io.iter_video_frames(path):
        black = black or BlackDetector(rgb.shape[1], rgb.shape[0], fps)
        black.push(rgb)
        luma = _small_luma(rgb)
        still.append(previous is not None and float(np.abs(luma - previous).mean()) < 0.001)
        means.append(float(luma.mean()))
        previous = luma
        if focus and count % step == 0 and len(sampled) < FOCUS_FRAMES:
            sampled.append((count, rgb))
        count += 1
    if not count:
        raise ValueError(f"'{path}' has no frames")
    audio = audio_io.decode_audio(path, start=info.start, duration=count / fps) if info.has_audio else None
    notes = []
    for a, b in black.ranges():
        notes.append({"kind": "black_frames", "start_frame": a, "end_frame": b,
                      "text": f"QC: {b - a + 1} black frames ({a}–{b})"})
    for a, b in freeze_ranges([], fps, freeze_s, still=still):
        notes.append({"kind": "frozen_frames", "start_frame": a, "end_frame": b,
                      "text": f"QC: frozen picture for {(b - a + 1) / fps:.2f} s ({a}–{b})"})
    sync = av_offset(np.array(means), fps, audio)
    if sync is not None and sync["offset_frames"] != 0:
        f = sync["flash_frame"]
        notes.append({"kind": "av_offset", "start_frame": f, "end_frame": f,
                      "text": f"QC: A/V offset {sync['offset_frames']} frames "
                              f"({'sound late' if sync['offset_frames'] > 0 else 'sound early'})"})
    loud = None
    try:
        from ..sequencer.loudness import ebur128
    except ImportError:  # the loudness meter comes with vibeboard[sequencer]; the other checks do not need it
        ebur128 = None
    if ebur128 is not None and audio is not None and audio[0].shape[1] >= int(0.4 * audio[1]):
        loud = ebur128(audio[0], audio[1])
        if loud["true_peak_dbtp"] > -1.0:
            notes.append({"kind": "loudness", "start_frame": 0, "end_frame": count - 1,
                          "text": f"QC: true peak {loud['true_peak_dbtp']:.1f} dBTP is above −1 dBTP"})
    flick = flicker(np.array(means))
    if flick and flick["flicker"]:
        notes.append({"kind": "flicker", "start_frame": 0, "end_frame": count - 1,
                      "text": f"QC: luma flicker (residual {flick['luma_residual_rms']:.3f})"})
    focus_report = None
    if focus and sampled:
        import torch
        from ..vfx.focus_inspect import inspect_shot
        batch = torch.from_numpy(np.stack([rgb for _, rgb in sampled])).float() / 255.0
        focus_report = inspect_shot(batch, shot=shot, max_frames=FOCUS_FRAMES)
        for warning in focus_report["warnings"]:
            a, b = (sampled[int(x)][0] for x in warning["frames"])
            notes.append({"kind": f"focus_{warning['type']}", "start_frame": a, "end_frame": b,
                          "text": f"QC focus: {warning['message']}"})
    return {"path": path, "frames": count, "fps": fps, "notes": notes, "av_sync": sync, "loudness": loud,
            "flicker": flick, "focus": focus_report}


def attach(store, version_id: str, report: dict) -> List[dict]:
    """Store the report's machine notes on the version (kind = machine)."""
    return [store.add_note(version_id, n["text"], n["start_frame"], n["end_frame"], author="qc", kind="machine")
            for n in report["notes"]]

