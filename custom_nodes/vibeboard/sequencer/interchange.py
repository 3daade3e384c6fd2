"""Write and read the cut in the formats editors exchange: .otio, .otioz, FCP7 XML, FCPXML, CMX 3600 EDL.

`.otio` is the only lossless one. What each other adapter loses is listed in ADAPTER_LIMITS (and in
docs/sequencer.md); this module repairs the two gaps that make real NLEs refuse a file:
  * FCP7 XML: OTIO writes an empty `<format/>`; Resolve 17+ ignores a sequence without one (OTIO #839), so
    we fill in `<samplecharacteristics>` (rate, width, height, square pixels, progressive);
  * CMX 3600 EDL: the adapter crashes on a dissolve whose clips lack handle frames, and it always starts the
    record side at 00:00:00:00; we refuse such dissolves with a message naming the clips, and shift the record
    timecodes to the timeline's start (01:00:00:00 by broadcast habit).
"""
from __future__ import annotations

import os
import re
import tempfile
import xml.etree.ElementTree as ET

import opentimelineio as otio

from . import timeline as tl

FORMATS = {  # name → (file extension, OTIO adapter)
    "otio": ("otio", "otio_json"),
    "otioz": ("otioz", "otioz"),
    "fcp7_xml": ("xml", "fcp_xml"),
    "fcpxml": ("fcpxml", "fcpx_xml"),
    "edl": ("edl", "cmx_3600"),
}

ADAPTER_LIMITS = {
    "otio": "lossless: tracks, clips, dissolves, markers and metadata.vibeboard (recipes) all kept",
    "otioz": "lossless like .otio, plus the media files stored inside the zip (media/ folder); every clip's media "
             "must be a local file",
    "fcp7_xml": "keeps cuts, dissolves and markers; drops metadata.vibeboard (recipes). OTIO writes an empty "
                "<format/>, VibeBoard fills it with rate/size so Resolve accepts it",
    "fcpxml": "keeps the cuts of one video track; dissolves become cuts (the outgoing clip ends where the "
              "transition starts), recipes are dropped",
    "edl": "one video track, 8-character reel names from the file names, no metadata; dissolves need handle "
           "frames on both clips; markers/notes need the marker-EDL export of Dailies",
}


class InterchangeError(ValueError):
    """The cut cannot be written/read in that format (the message says why and what to do)."""


def _samplecharacteristics(fps: float, width: int, height: int) -> ET.Element:
    chars = ET.Element("samplecharacteristics")
    rate = ET.SubElement(chars, "rate")
    timebase = round(fps)
    ET.SubElement(rate, "timebase").text = str(int(timebase))
    ET.SubElement(rate, "ntsc").text = "TRUE" if abs(fps - timebase) > 1e-3 else "FALSE"
    ET.SubElement(chars, "width").text = str(int(width))
    ET.SubElement(chars, "height").text = str(int(height))
    ET.SubElement(chars, "anamorphic").text = "FALSE"
    ET.SubElement(chars, "pixelaspectratio").text = "square"
    ET.SubElement(chars, "fielddominance").text = "none"
    return chars


def fill_fcp7_format(xml_text: str, fps: float, width: int, height: int) -> str:
    """Give every empty sequence `<format/>` its rate and frame size."""
    root = ET.fromstring(xml_text)
    for fmt in root.iter("format"):
        if fmt.find("samplecharacteristics") is None:
            fmt.append(_samplecharacteristics(fps, width, height))
    return '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE xmeml>\n' + ET.tostring(root, encoding="unicode")


_OTIO_DISSOLVE = re.compile(r" ([DW]) (\d{3}) {4}")
_EDL_EVENT = re.compile(r"^(\d{3,6}\s+\S+\s+\S+\s+\S+(?:\s+\d{3})?\s+\S+\s+\S+\s+)(\S+)\s+(\S+)\s*$")


def shift_edl_record(edl_text: str, fps: float, start_frame: int) -> str:
    """Add `start_frame` to the record-in/record-out timecodes of every event line."""
    rate = round(fps) if abs(fps - round(fps)) < 1e-3 else fps
    out = []
    for line in edl_text.splitlines():
        # OTIO writes "D 012    "; CMX 3600 puts the transition in columns 25-28 and its duration in 30-32
        # ("D    012 "), which column-based readers (pycmx, older NLEs) need. Same width either way.
        line = _OTIO_DISSOLVE.sub(lambda m: f" {m.group(1):<4} {m.group(2)} ", line)
        match = _EDL_EVENT.match(line)
        if match:
            rec_in = otio.opentime.from_timecode(match.group(2), rate) + tl.rt(start_frame, rate)
            rec_out = otio.opentime.from_timecode(match.group(3), rate) + tl.rt(start_frame, rate)
            line = (match.group(1) + otio.opentime.to_timecode(rec_in, rate) + " "
                    + otio.opentime.to_timecode(rec_out, rate))
        out.append(line)
    return "\n".join(out) + "\n"


def _edl_ready(timeline):
    """Check what a CMX 3600 EDL can carry; returns a copy holding only the first video track."""
    video = tl.video_track(timeline)
    problems = tl.check_handles(video)
    if problems:
        raise InterchangeError("EDL export refused: " + "; ".join(problems) + ". A CMX 3600 dissolve plays "
                               "media past the cut on both sides: re-render the clips with handles "
                               "(Regenerate In Place, handles ≥ half the dissolve) or make it a cut.")
    single = otio.schema.Timeline(name=timeline.name)
    single.tracks.append(video.clone())
    return single


def write(timeline, path: str, fmt: str) -> str:
    """Write `timeline` to `path` as `fmt` (a key of FORMATS). Refuses to overwrite an existing file."""
    if fmt not in FORMATS:
        raise InterchangeError(f"unknown format '{fmt}'; choose one of {', '.join(FORMATS)}")
    if os.path.exists(path) and os.path.getsize(path) > 0:
        raise InterchangeError(f"'{path}' exists; will not overwrite it")
    fps = tl.timeline_rate(timeline)
    meta = timeline.metadata.get("vibeboard", {})
    adapter = FORMATS[fmt][1]
    if fmt == "otioz":
        if os.path.exists(path):
            os.remove(path)  # an empty reserved name from unique_output_path
        try:
            otio.adapters.write_to_file(timeline, path, adapter_name="otioz")
        except otio.exceptions.OTIOError as exc:
            raise InterchangeError(f"OTIOZ bundles media files: {exc} (every clip must point at a local "
                                   "file with a unique name)") from None
        return path
    if fmt == "edl":
        text = otio.adapters.write_to_string(_edl_ready(timeline), adapter)
        start = int(round(timeline.global_start_time.value)) if timeline.global_start_time is not None else 0
        text = shift_edl_record(text, fps, start)
    else:
        text = otio.adapters.write_to_string(timeline, adapter)
        if fmt == "fcp7_xml":
            text = fill_fcp7_format(text, fps, meta.get("width") or 1920, meta.get("height") or 1080)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


def read(path: str, extract_to: str = ""):
    """Read a timeline in any of FORMATS (by extension). `.otioz` media is extracted to `extract_to` (a temp
    folder when empty) and the clips point at the extracted files."""
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    adapters = {"otio": "otio_json", "otioz": "otioz", "xml": "fcp_xml", "fcpxml": "fcpx_xml", "edl": "cmx_3600"}
    if ext not in adapters:
        raise InterchangeError(f"cannot tell the format of '{path}' from its extension; expected one of "
                               f"{', '.join('.' + e for e in adapters)}")
    try:
        if ext == "otioz":
            folder = extract_to or tempfile.mkdtemp(prefix="vibeboard_otioz_")
            os.makedirs(folder, exist_ok=True)
            result = otio.adapters.read_from_file(path, adapter_name="otioz", extract_to_directory=folder)
            for clip in result.find_clips():  # relative media/… URLs → the extracted files
                url = getattr(clip.media_reference, "target_url", "")
                if url and not os.path.isabs(otio.url_utils.filepath_from_url(url)):
                    clip.media_reference.target_url = tl.media_url(
                        os.path.join(folder, otio.url_utils.filepath_from_url(url)))
            return result
        return otio.adapters.read_from_file(path, adapter_name=adapters[ext])
    except otio.exceptions.OTIOError as exc:
        raise InterchangeError(f"cannot read '{path}' as {ext}: {exc}") from None
