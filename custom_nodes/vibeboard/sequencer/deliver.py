"""The deliverables folder of a cut: the MP4 (loudness-normalised mix), the timeline in every interchange format
the cut allows, captions (SRT, WebVTT, TTML) and the loudness report, with a manifest saying what was written
and why anything was skipped."""
from __future__ import annotations

import json
import os
from typing import Optional, Sequence, Tuple

from . import audio_mix, captions, conform, interchange, loudness
from . import timeline as tl

RATE = 48000


def deliver(timeline, folder: str, *, dialogue_lines: Optional[Sequence[str]] = None,
            tts_spans: Optional[Sequence[Tuple[float, float]]] = None, loudness_preset: str = "ebu_r128",
            crf: int = 19, x264_preset: str = "medium", on_frame=None, burn_in: bool = False) -> dict:
    os.makedirs(folder, exist_ok=True)
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in timeline.name) or "cut"
    manifest = {"timeline": timeline.name, "files": {}, "skipped": {}}
    fps = tl.timeline_rate(timeline)
    mix_report: dict = {}
    mix = audio_mix.mix_timeline(timeline, RATE, mix_report)
    audio = None
    if mix is not None:
        dialogue = None
        try:
            dialogue = audio_mix.track_audio(tl.track(timeline, tl.DIALOGUE_TRACK), fps, RATE, mix.shape[1])
        except tl.TimelineError:
            pass
        normalised, report = loudness.normalize(mix, RATE, loudness_preset, dialogue=dialogue)
        report["mix"] = mix_report
        audio = (normalised, RATE)
        path = os.path.join(folder, "loudness_report.json")
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2, default=float)
        manifest["files"]["loudness_report"] = path
        manifest["loudness"] = {"preset": loudness_preset, "passes": report["passes"],
                                "integrated_lufs": report["after"]["integrated_lufs"],
                                "true_peak_dbtp": report["after"]["true_peak_dbtp"]}
    else:
        manifest["skipped"]["loudness_report"] = "the timeline has no sound"
    video = os.path.join(folder, f"{name}.mp4")
    result = conform.render(timeline, video, crf=crf, preset=x264_preset, with_audio=False, audio=audio,
                            on_frame=on_frame)
    manifest["files"]["video"] = video
    manifest["frames"] = result["frames"]
    for fmt, (ext, _) in interchange.FORMATS.items():
        path = os.path.join(folder, f"{name}.{ext}")
        try:
            interchange.write(timeline, path, fmt)
            manifest["files"][fmt] = path
        except interchange.InterchangeError as exc:
            manifest["skipped"][fmt] = str(exc)
    if dialogue_lines:
        wave = None
        if tts_spans is None:
            wave = audio_mix.track_audio(tl.track(timeline, tl.DIALOGUE_TRACK), fps, RATE,
                                         int(round(tl.duration_frames(timeline) / fps * RATE)))
        events = captions.from_dialogue(dialogue_lines, wave, RATE, fps, tts_spans=tts_spans,
                                        total=tl.duration_frames(timeline) / fps)
        manifest["caption_problems"] = captions.validate(events, fps)
        for fmt in ("srt", "vtt", "ttml"):
            path = os.path.join(folder, f"{name}.{fmt}")
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(captions.to_text(events, fmt))
            manifest["files"][f"captions_{fmt}"] = path
        if burn_in:
            path = os.path.join(folder, f"{name}_captioned.mp4")
            conform.render(timeline, path, crf=crf, preset=x264_preset, with_audio=False, audio=audio,
                           captions=events)
            manifest["files"]["video_captioned"] = path
    with open(os.path.join(folder, "manifest.json"), "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=2, default=float)
    return manifest
