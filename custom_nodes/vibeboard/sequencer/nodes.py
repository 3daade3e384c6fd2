"""Sequencer nodes: thin wrappers over timeline.py, assembly.py, interchange.py, conform.py, audio_mix.py,
loudness.py, captions.py and deliver.py. The timeline travels between nodes as VB_TIMELINE (an OTIO Timeline);
every node that changes it returns a copy."""
from __future__ import annotations

import copy
import json
import re

from ..common import runtime
from ..common.runtime import NodeInputError
from ..media import audio as audio_io
from ..media import video as video_io
from . import node_io

CATEGORY = "VibeBoard/Sequencer"
TIMELINE = "VB_TIMELINE"
TRACKS = ["V1", "A1 Dialogue", "A2 Music"]


def _otio(node):
    try:
        from . import assembly, audio_mix, captions, conform, deliver, interchange, loudness  # noqa: F401
        from . import timeline
    except ImportError as exc:
        raise NodeInputError(node, "timeline", f"the Sequencer needs OpenTimelineIO and friends ({exc.name or exc}): "
                             "pip install vibeboard[sequencer]") from None
    return {"assembly": assembly, "audio_mix": audio_mix, "captions": captions, "conform": conform,
            "deliver": deliver, "interchange": interchange, "loudness": loudness, "timeline": timeline}


def _check_timeline(node, value):
    import opentimelineio as otio
    if not isinstance(value, otio.schema.Timeline):
        raise NodeInputError(node, "timeline", f"expected a {TIMELINE} (OpenTimelineIO Timeline), got "
                             f"{type(value).__name__}")
    return value


def _progress(node_total=1):
    bar = runtime.progress_bar(node_total)
    return lambda done, total: bar.update_absolute(done, total)


class VBTestClip:
    DESCRIPTION = ("Write a tiny test clip (MP4, PyAV) whose colour encodes the clip id and frame number, with "
                   "an optional clap mark (a white frame + a 1 kHz blip) and black/frozen stretches — real media "
                   "for trying the Sequencer and Dailies without any generator.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("STRING", "INT")
    RETURN_NAMES = ("path", "frames")
    OUTPUT_TOOLTIPS = ("path of the test MP4", "number of frames written")
    OUTPUT_NODE = True
    FUNCTION = "make"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "frames": ("INT", {"default": 48, "min": 1, "max": 2000, "tooltip": "number of frames"}),
            "fps": ("FLOAT", {"default": 24.0, "min": 1.0, "max": 120.0, "step": 0.001, "tooltip": "frame rate"}),
            "width": ("INT", {"default": 64, "min": 16, "max": 1920, "step": 2, "tooltip": "frame width"}),
            "height": ("INT", {"default": 48, "min": 16, "max": 1080, "step": 2, "tooltip": "frame height"}),
            "clip_id": ("INT", {"default": 0, "min": 0, "max": 3, "tooltip": "tints the clip (blue level)"}),
            "clap_frame": ("INT", {"default": -1, "min": -1, "max": 2000,
                                   "tooltip": "frame of the white clap flash with a 1 kHz blip (-1 = none)"}),
            "audio": (["tone", "clap", "none"], {"default": "tone",
                                                 "tooltip": "a quiet 220 Hz tone, only the clap blip, or silent"}),
            "filename_prefix": ("STRING", {"default": "vibeboard/sequencer/test_clip",
                                           "tooltip": "name prefix inside the output folder"}),
        }}

    def make(self, frames, fps, width, height, clip_id, clap_frame, audio, filename_prefix):
        import numpy as np
        from .test_media import coded_frames, tone
        node = runtime.node_label(VBTestClip)
        path, entry = node_io.output_file(node, filename_prefix, "mp4")
        flash = clap_frame if 0 <= clap_frame < frames else None
        sound = None
        if audio != "none":
            if audio == "clap":  # silence with the blip on the flash frame (silence alone without a flash)
                wave = tone(frames / fps, blip_at=flash / fps) if flash is not None else tone(frames / fps) * 0
            else:
                wave = tone(frames / fps)
            sound = (wave.astype(np.float32), 48000)
        video_io.write_video(path, coded_frames(frames, width, height, clip_id, flash), fps, crf=18,
                             preset="veryfast", audio=sound)
        return {"ui": {"images": [{**entry, "format": "video/mp4"}], "animated": [True]}, "result": (path, frames)}


class VBTimelineNew:
    DESCRIPTION = "Start an empty cut: an OpenTimelineIO timeline with a video track and dialogue/music tracks."
    CATEGORY = CATEGORY
    RETURN_TYPES = (TIMELINE,)
    RETURN_NAMES = ("timeline",)
    OUTPUT_TOOLTIPS = ("an empty cut (video, dialogue and music tracks)",)
    FUNCTION = "new"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "name": ("STRING", {"default": "Assembly", "tooltip": "timeline name"}),
            "fps": ("FLOAT", {"default": 24.0, "min": 1.0, "max": 120.0, "step": 0.001, "tooltip": "timeline rate"}),
            "width": ("INT", {"default": 0, "min": 0, "max": 8192, "tooltip": "frame width (0 = first clip's)"}),
            "height": ("INT", {"default": 0, "min": 0, "max": 8192, "tooltip": "frame height (0 = first clip's)"}),
            "start_timecode": ("STRING", {"default": "01:00:00:00",
                                          "tooltip": "record start (EDL/XML); 01:00:00:00 by broadcast habit"}),
        }}

    def new(self, name, fps, width, height, start_timecode):
        node = runtime.node_label(VBTimelineNew)
        mods = _otio(node)
        import opentimelineio as otio
        try:
            start = otio.opentime.from_timecode(start_timecode.strip() or "00:00:00:00", round(fps)).value
        except (ValueError, RuntimeError) as exc:
            raise NodeInputError(node, "start_timecode", f"'{start_timecode}' is not HH:MM:SS:FF: {exc}") from None
        return (mods["timeline"].new_timeline(name, fps, width, height, int(start)),)


class VBTimelineAddClip:
    DESCRIPTION = ("Append a clip to a track of the cut (a copy of the timeline is returned). Its recipe (JSON: "
                   "job_id, workflow, seed, model ids, prompt, parent) rides in metadata.vibeboard so the clip can "
                   "be re-rendered later. A dissolve > 0 is centred on the cut and needs handle frames.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (TIMELINE,)
    RETURN_NAMES = ("timeline",)
    OUTPUT_TOOLTIPS = ("a copy of the cut with the clip appended",)
    FUNCTION = "add"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "timeline": (TIMELINE, {"tooltip": "the cut so far"}),
            "media_path": ("STRING", {"default": "", "tooltip": "the clip's file: absolute or inside the output "
                                      "folder (link a Save Video path here)"}),
            "name": ("STRING", {"default": "shot", "tooltip": "clip name (the shot)"}),
            "track": (TRACKS, {"default": "V1", "tooltip": "video or audio track"}),
            "source_in": ("INT", {"default": 0, "min": 0, "max": 1_000_000,
                                  "tooltip": "first media frame used (frames before it are handles)"}),
            "duration": ("INT", {"default": 0, "min": 0, "max": 1_000_000,
                                 "tooltip": "frames on the timeline (0 = to the end of the media)"}),
            "dissolve_frames": ("INT", {"default": 0, "min": 0, "max": 1000,
                                        "tooltip": "dissolve from the previous clip (0 = cut)"}),
            "recipe": ("STRING", {"default": "{}", "multiline": True, "tooltip": "the generation recipe (JSON)"}),
        }}

    def add(self, timeline, media_path, name, track, source_in, duration, dissolve_frames, recipe):
        node = runtime.node_label(VBTimelineAddClip)
        mods = _otio(node)
        T = mods["timeline"]
        timeline = copy.deepcopy(_check_timeline(node, timeline))
        path = node_io.media_file(node, "media_path", media_path)
        fps = T.timeline_rate(timeline)
        if track == "V1":
            frames = video_io.probe_video(path).frame_count
        else:
            decoded = audio_io.decode_audio(path)
            if decoded is None:
                raise NodeInputError(node, "media_path", f"'{path}' has no audio for track {track}")
            frames = int(decoded[0].shape[1] / decoded[1] * fps)
        duration = duration or frames - source_in
        try:
            clip = T.make_clip(name, path, fps, source_in, duration, frames,
                               node_io.json_input(node, "recipe", recipe))
            T.append_clip(T.track(timeline, track), clip, dissolve_frames)
        except T.TimelineError as exc:
            raise NodeInputError(node, "duration" if "frames" in str(exc) else "dissolve_frames", str(exc)) from None
        return (timeline,)


class VBAssembleCut:
    DESCRIPTION = ("Auto-assemble the cut from a shot order (JSON from Script Lab's breakdown: scenes → shots) "
                   "using each shot's latest APPROVED version in a Dailies project (or the shot's own 'path').")
    CATEGORY = CATEGORY
    RETURN_TYPES = (TIMELINE, "STRING")
    RETURN_NAMES = ("timeline", "summary")
    OUTPUT_TOOLTIPS = ("the assembled cut (OpenTimelineIO)", "which version each shot used, and what is missing")
    FUNCTION = "assemble"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "shot_order": ("STRING", {"default": '{"fps": 24, "shots": []}', "multiline": True,
                                      "tooltip": "{'fps', 'width', 'height', 'start_frame', 'shots': [{'shot', "
                                                 "'scene', 'dissolve_in', 'source_in', 'duration', 'path'}]}"}),
            "project": ("STRING", {"default": "", "tooltip": "Dailies project giving the approved versions "
                                   "(empty = use each shot's 'path')"}),
        }}

    def assemble(self, shot_order, project):
        node = runtime.node_label(VBAssembleCut)
        mods = _otio(node)
        resolve = None
        if project.strip():
            from ..dailies.nodes import open_store
            resolve = open_store(node, project).latest_approved
        order = node_io.json_input(node, "shot_order", shot_order)
        for shot in order.get("shots", []):
            if isinstance(shot, dict) and shot.get("path"):
                shot["path"] = node_io.media_file(node, "shot_order", shot["path"])
        try:
            timeline = mods["assembly"].assemble(order, resolve)
        except (mods["assembly"].AssemblyError, mods["timeline"].TimelineError, ValueError) as exc:
            raise NodeInputError(node, "shot_order", str(exc)) from None
        return (timeline, json.dumps(mods["timeline"].summary(timeline), indent=1))


class VBTimelineExport:
    DESCRIPTION = ("Write the cut as .otio (lossless), .otioz (with media), FCP7 XML (with <format>), FCPXML or "
                   "a CMX 3600 EDL (refuses dissolves without handles; record side starts at the timeline start).")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("path",)
    OUTPUT_TOOLTIPS = ("path of the written timeline file",)
    OUTPUT_NODE = True
    FUNCTION = "export"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "timeline": (TIMELINE, {"tooltip": "the cut"}),
            "format": (["otio", "otioz", "fcp7_xml", "fcpxml", "edl"], {"default": "otio",
                                                                       "tooltip": "interchange format"}),
            "filename_prefix": ("STRING", {"default": "vibeboard/sequencer/cut", "tooltip": "name prefix"}),
        }}

    def export(self, timeline, format, filename_prefix):
        node = runtime.node_label(VBTimelineExport)
        mods = _otio(node)
        I = mods["interchange"]
        if format not in I.FORMATS:
            raise NodeInputError(node, "format", f"choose one of {', '.join(I.FORMATS)}")
        path, entry = node_io.output_file(node, filename_prefix, I.FORMATS[format][0])
        try:
            I.write(_check_timeline(node, timeline), path, format)
        except I.InterchangeError as exc:
            import os
            os.remove(path)
            raise NodeInputError(node, "format", str(exc)) from None
        return {"ui": {"files": [entry]}, "result": (path,)}


class VBTimelineAudio:
    DESCRIPTION = ("Audio settings of one track (copy returned): gain, and ducking under another track — the "
                   "music dips by duck_db wherever silero-vad hears speech on the dialogue track.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (TIMELINE,)
    RETURN_NAMES = ("timeline",)
    OUTPUT_TOOLTIPS = ("a copy of the cut with the track's audio settings",)
    FUNCTION = "set"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "timeline": (TIMELINE, {"tooltip": "the cut"}),
            "track": (TRACKS, {"default": "A2 Music", "tooltip": "track to set"}),
            "gain_db": ("FLOAT", {"default": 0.0, "min": -60.0, "max": 24.0, "step": 0.1, "tooltip": "track gain"}),
            "duck_under": (["none"] + TRACKS, {"default": "A1 Dialogue", "tooltip": "duck under this track's speech"}),
            "duck_db": ("FLOAT", {"default": 12.0, "min": 0.0, "max": 60.0, "step": 0.5, "tooltip": "ducking depth"}),
        }}

    def set(self, timeline, track, gain_db, duck_under, duck_db):
        node = runtime.node_label(VBTimelineAudio)
        T = _otio(node)["timeline"]
        timeline = copy.deepcopy(_check_timeline(node, timeline))
        try:
            target = T.track(timeline, track)
        except T.TimelineError as exc:
            raise NodeInputError(node, "track", str(exc)) from None
        settings = {"gain_db": float(gain_db)}
        if duck_under != "none":
            if duck_under == track:
                raise NodeInputError(node, "duck_under", "a track cannot duck under itself")
            settings.update({"duck_under": duck_under, "duck_db": float(duck_db)})
        target.metadata["vibeboard"] = settings
        return (timeline,)


class VBRenderCut:
    DESCRIPTION = ("Conform the cut to an H.264 MP4 with PyAV: exactly duration × fps frames, dissolves mixed "
                   "from the handles, the timeline's audio mix (gains, fades, ducking) in sync.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("STRING", "INT", "AUDIO")
    RETURN_NAMES = ("path", "frames", "mix")
    OUTPUT_TOOLTIPS = ("path of the rendered MP4", "number of video frames written", "the cut's audio mix")
    OUTPUT_NODE = True
    FUNCTION = "render"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "timeline": (TIMELINE, {"tooltip": "the cut"}),
            "filename_prefix": ("STRING", {"default": "vibeboard/sequencer/cut", "tooltip": "name prefix"}),
            "crf": ("INT", {"default": 19, "min": 0, "max": 51, "tooltip": "x264 quality"}),
            "preset": (list(video_io.PRESETS), {"default": "medium", "tooltip": "x264 speed/size trade-off"}),
        }}

    def render(self, timeline, filename_prefix, crf, preset):
        node = runtime.node_label(VBRenderCut)
        mods = _otio(node)
        timeline = _check_timeline(node, timeline)
        mix = mods["audio_mix"].mix_timeline(timeline, 48000)
        path, entry = node_io.output_file(node, filename_prefix, "mp4")
        try:
            result = mods["conform"].render(timeline, path, crf=crf, preset=preset, with_audio=False,
                                            audio=None if mix is None else (mix, 48000), on_frame=_progress())
        except mods["conform"].ConformError as exc:
            raise NodeInputError(node, "timeline", str(exc)) from None
        audio = audio_io.empty_audio(48000, 2) if mix is None else audio_io.to_audio_dict(mix, 48000)
        return {"ui": {"images": [{**entry, "format": "video/mp4"}], "animated": [True]},
                "result": (path, result["frames"], audio)}


class VBLoudnessNormalize:
    DESCRIPTION = ("Normalise AUDIO to a delivery preset — EBU R128 (−23 LUFS, −1 dBTP), streaming (−14/−16), "
                   "Netflix dialogue-gated (−27 ±2, speech by silero-vad) — measured with FFmpeg's ebur128 "
                   "(true peak) and pyloudnorm; returns the report as JSON.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("AUDIO", "STRING")
    RETURN_NAMES = ("audio", "report")
    OUTPUT_TOOLTIPS = ("the normalised audio", "JSON: loudness and true peak before and after")
    OUTPUT_NODE = True
    FUNCTION = "normalize"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "audio": ("AUDIO", {"tooltip": "the mix"}),
            "preset": (["ebu_r128", "streaming", "streaming_16", "netflix"], {"default": "ebu_r128",
                                                                             "tooltip": "loudness target"}),
            "save_report": ("BOOLEAN", {"default": True, "tooltip": "write the report JSON to the output folder"}),
        }, "optional": {"dialogue": ("AUDIO", {"tooltip": "dialogue stem for the Netflix speech gate"})}}

    def normalize(self, audio, preset, save_report, dialogue=None):
        node = runtime.node_label(VBLoudnessNormalize)
        L = _otio(node)["loudness"]
        wave, rate = audio_io.audio_from_input(audio, node)
        stem = audio_io.audio_from_input(dialogue, node, "dialogue")[0] if dialogue is not None else None
        try:
            out, report = L.normalize(wave, rate, preset, dialogue=stem)
        except ValueError as exc:
            raise NodeInputError(node, "audio", str(exc)) from None
        text = json.dumps(report, indent=1, default=float)
        ui = {"text": [f"{preset}: {report['after'][report['measured_key']]:.1f} LUFS, "
                       f"{report['after']['true_peak_dbtp']:.1f} dBTP, {'passes' if report['passes'] else 'FAILS'}"]}
        if save_report:
            path, entry = node_io.output_file(node, "vibeboard/sequencer/loudness_report", "json")
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(text)
            ui["files"] = [entry]
        return {"ui": ui, "result": (audio_io.to_audio_dict(out, rate), text)}


_STAMP = re.compile(r"^\s*\[\s*([0-9.]+)\s*-\s*([0-9.]+)\s*\]\s*(.*)$")


def parse_dialogue(node, text):
    """Lines of dialogue, one per line; '[1.5-3.2] text' gives the line's TTS timestamps (seconds)."""
    lines, spans = [], []
    for raw in (text or "").splitlines():
        if not raw.strip():
            continue
        match = _STAMP.match(raw)
        if match:
            spans.append((float(match.group(1)), float(match.group(2))))
            lines.append(match.group(3).strip())
        else:
            lines.append(raw.strip())
    if not lines:
        raise NodeInputError(node, "dialogue", "no dialogue lines")
    if spans and len(spans) != len(lines):
        raise NodeInputError(node, "dialogue", "give '[start-end]' timestamps on every line or on none")
    return lines, (spans or None)


class VBCaptions:
    DESCRIPTION = ("Captions from the script's dialogue lines, timed by TTS timestamps ('[start-end] text') or by "
                   "the speech silero-vad finds in the dialogue AUDIO; checked against the caption rules (42 "
                   "chars/line, 2 lines, 17 cps, 2-frame gaps, 5/6–7 s) and written as SRT, WebVTT and TTML.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("STRING", "STRING")
    RETURN_NAMES = ("srt", "problems")
    OUTPUT_TOOLTIPS = ("the captions as SRT text", "caption rules broken, one per line (empty when none)")
    OUTPUT_NODE = True
    FUNCTION = "caption"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "dialogue": ("STRING", {"default": "", "multiline": True, "tooltip": "one line of dialogue per line"}),
            "fps": ("FLOAT", {"default": 24.0, "min": 1.0, "max": 120.0, "step": 0.001,
                              "tooltip": "frame rate (times snap to frames; gaps count frames)"}),
            "filename_prefix": ("STRING", {"default": "vibeboard/sequencer/captions", "tooltip": "name prefix"}),
        }, "optional": {"audio": ("AUDIO", {"tooltip": "dialogue audio to time untimed lines against"})}}

    def caption(self, dialogue, fps, filename_prefix, audio=None):
        node = runtime.node_label(VBCaptions)
        C = _otio(node)["captions"]
        lines, spans = parse_dialogue(node, dialogue)
        wave, rate = (None, 48000) if audio is None else audio_io.audio_from_input(audio, node)
        try:
            events = C.from_dialogue(lines, wave, rate, fps, tts_spans=spans)
        except C.CaptionError as exc:
            raise NodeInputError(node, "audio" if audio is not None else "dialogue", str(exc)) from None
        problems = C.validate(events, fps)
        entries, srt = [], ""
        for fmt in ("srt", "vtt", "ttml"):
            path, entry = node_io.output_file(node, filename_prefix, fmt)
            text = C.to_text(events, fmt)
            srt = text if fmt == "srt" else srt
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(text)
            entries.append(entry)
        return {"ui": {"files": entries, "text": [f"{len(events)} events, {len(problems)} rule problems"]},
                "result": (srt, json.dumps(problems))}


class VBRegenerateInPlace:
    DESCRIPTION = ("Swap a clip's media for its re-render (same cut points, copy returned): the new file was "
                   "rendered from the clip's recipe with `handles` extra frames before the first used frame.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (TIMELINE,)
    RETURN_NAMES = ("timeline",)
    OUTPUT_TOOLTIPS = ("a copy of the cut with the clip's media swapped",)
    FUNCTION = "swap"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "timeline": (TIMELINE, {"tooltip": "the cut"}),
            "clip_name": ("STRING", {"default": "", "tooltip": "the clip to replace"}),
            "media_path": ("STRING", {"default": "", "tooltip": "the re-rendered file"}),
            "handles": ("INT", {"default": 0, "min": 0, "max": 1000, "tooltip": "extra frames at its start"}),
            "recipe_update": ("STRING", {"default": "{}", "multiline": True, "tooltip": "recipe changes (JSON)"}),
        }}

    def swap(self, timeline, clip_name, media_path, handles, recipe_update):
        node = runtime.node_label(VBRegenerateInPlace)
        T = _otio(node)["timeline"]
        path = node_io.media_file(node, "media_path", media_path)
        frames = video_io.probe_video(path).frame_count
        try:
            return (T.replace_media(_check_timeline(node, timeline), clip_name, path, frames, handles,
                                    node_io.json_input(node, "recipe_update", recipe_update)),)
        except T.TimelineError as exc:
            raise NodeInputError(node, "clip_name" if "no clip" in str(exc) else "handles", str(exc)) from None


class VBRegeneratePlan:
    DESCRIPTION = ("The re-render job of a clip, from the recipe in its metadata (prompt_graph + length_input): "
                   "the same workflow asking for 2 × handles more frames (rounded to the model's frame rule). "
                   "Submit it (vibeboard run / POST /prompt), then swap its output in with Regenerate In Place.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("STRING", "INT")
    RETURN_NAMES = ("job", "handles")
    OUTPUT_TOOLTIPS = ("the re-render job as API-format JSON", "handle frames asked for on each side")
    FUNCTION = "plan"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "timeline": (TIMELINE, {"tooltip": "the cut"}),
            "clip_name": ("STRING", {"default": "", "tooltip": "the clip to re-render"}),
            "handles": ("INT", {"default": 8, "min": 0, "max": 1000, "tooltip": "extra frames on each side"}),
        }}

    def plan(self, timeline, clip_name, handles):
        node = runtime.node_label(VBRegeneratePlan)
        _otio(node)
        from . import regenerate
        try:
            job = regenerate.plan(_check_timeline(node, timeline), clip_name, handles)
        except regenerate.TimelineError as exc:
            raise NodeInputError(node, "clip_name", str(exc)) from None
        return (json.dumps(job["graph"], indent=1), int(job["handles_before"]))


class VBDeliverables:
    DESCRIPTION = ("Export the deliverables folder: the MP4 with a loudness-normalised mix, the timeline as "
                   ".otio/.otioz/FCP XML/FCPXML/EDL (what the cut allows), captions (SRT/VTT/TTML) and the "
                   "loudness report, with manifest.json.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("STRING", "STRING")
    RETURN_NAMES = ("folder", "manifest")
    OUTPUT_TOOLTIPS = ("path of the deliverables folder", "the manifest.json text")
    OUTPUT_NODE = True
    FUNCTION = "deliver"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "timeline": (TIMELINE, {"tooltip": "the cut"}),
            "loudness_preset": (["ebu_r128", "streaming", "streaming_16", "netflix"], {"default": "ebu_r128",
                                                                                      "tooltip": "mix target"}),
            "dialogue": ("STRING", {"default": "", "multiline": True,
                                    "tooltip": "dialogue lines for captions ('[start-end] text' for TTS timing); "
                                               "empty = no captions"}),
            "filename_prefix": ("STRING", {"default": "vibeboard/sequencer/deliverables",
                                           "tooltip": "folder name prefix inside the output folder"}),
            "burn_in": ("BOOLEAN", {"default": False, "tooltip": "also write a copy with the captions burnt in"}),
        }}

    def deliver(self, timeline, loudness_preset, dialogue, filename_prefix, burn_in=False):
        node = runtime.node_label(VBDeliverables)
        mods = _otio(node)
        timeline = _check_timeline(node, timeline)
        lines, spans = parse_dialogue(node, dialogue) if dialogue.strip() else (None, None)
        folder, _ = node_io.output_folder(node, filename_prefix)
        try:
            manifest = mods["deliver"].deliver(timeline, folder, dialogue_lines=lines, tts_spans=spans,
                                               loudness_preset=loudness_preset, on_frame=_progress(),
                                               burn_in=bool(burn_in and lines))
        except (mods["conform"].ConformError, mods["captions"].CaptionError, ValueError) as exc:
            raise NodeInputError(node, "timeline", f"{exc} (files already written stay in {folder})") from None
        files = [node_io.ui_file(p) for p in manifest["files"].values()]
        return {"ui": {"files": files}, "result": (folder, json.dumps(manifest, indent=1, default=float))}


NODE_CLASS_MAPPINGS = {
    "VBTestClip": VBTestClip,
    "VBTimelineNew": VBTimelineNew,
    "VBTimelineAddClip": VBTimelineAddClip,
    "VBAssembleCut": VBAssembleCut,
    "VBTimelineExport": VBTimelineExport,
    "VBTimelineAudio": VBTimelineAudio,
    "VBRenderCut": VBRenderCut,
    "VBLoudnessNormalize": VBLoudnessNormalize,
    "VBCaptions": VBCaptions,
    "VBRegenerateInPlace": VBRegenerateInPlace,
    "VBRegeneratePlan": VBRegeneratePlan,
    "VBDeliverables": VBDeliverables,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "VBTestClip": "Test Clip (VibeBoard)",
    "VBTimelineNew": "Timeline New (VibeBoard)",
    "VBTimelineAddClip": "Timeline Add Clip (VibeBoard)",
    "VBAssembleCut": "Assemble Cut (VibeBoard)",
    "VBTimelineExport": "Timeline Export (VibeBoard)",
    "VBTimelineAudio": "Timeline Audio (VibeBoard)",
    "VBRenderCut": "Render Cut (VibeBoard)",
    "VBLoudnessNormalize": "Loudness Normalize (VibeBoard)",
    "VBCaptions": "Captions (VibeBoard)",
    "VBRegenerateInPlace": "Regenerate In Place (VibeBoard)",
    "VBRegeneratePlan": "Regenerate Plan (VibeBoard)",
    "VBDeliverables": "Deliverables (VibeBoard)",
}
