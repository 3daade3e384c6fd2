"""Dailies notes and annotations out to the formats review tools read: OTIO (OpenRV-compatible annotation
fields), CSV, and a marker EDL (Resolve's `|C:… |M:… |D:…` comment lines).

OTIO layout: one timeline per shot, one clip per version (its media), each note a Marker on the clip (marked
range = the note's frames of that version), each annotation an `Annotation.1` effect on the clip holding one
`Paint.1` layer whose `layer_range` is the annotation's frames — the fields OpenRV's otio_reader schemadefs
declare (name, points of `Point.1` {x, y, width}, rgba, type, brush, layer_range, visible). RV's points are
centre-origin, y up, x scaled by the aspect ratio; VibeBoard's exact 0..1 upper-left shape rides along in the
layer's `vibeboard` field, which is what `import_annotations` reads back.
"""
from __future__ import annotations

import csv
import io
import json
from typing import List

import opentimelineio as otio

from ..sequencer import timeline as tl
from .store import DailiesStore

MARKER_COLORS = {"open": "RED", "resolved": "GREEN"}
RESOLVE_COLORS = {"open": "ResolveColorRed", "resolved": "ResolveColorGreen"}


def _rv_points(shape: dict, aspect: float) -> List[dict]:
    points = shape["points"]
    if shape["type"] in ("rectangle", "ellipse"):  # an outline RV can draw as a stroke
        (x0, y0), (x1, y1) = points[0], points[1]
        points = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    return [{"OTIO_SCHEMA": "Point.1", "x": (x - 0.5) * aspect, "y": 0.5 - y, "width": shape["width"]}
            for x, y in points]


def _annotation_type():
    """The `Annotation.1` effect schema with OpenRV's fields (name, visible, layers). Registered here unless
    the process already knows it (OpenRV's own schemadef plugin loaded), so both read the same files."""
    probe = otio.adapters.read_from_string('{"OTIO_SCHEMA": "Annotation.1", "name": "", "effect_name": ""}',
                                           "otio_json")
    if not probe.is_unknown_schema:
        return type(probe)

    @otio.core.register_type
    class Annotation(otio.schema.Effect):
        _serializable_label = "Annotation.1"
        _name = "Annotation"

        def __init__(self, name: str = "", visible: bool = True, layers=None):
            super().__init__(name=name, effect_name="Annotation.1")
            self.visible = visible
            self.layers = layers if layers is not None else []

        visible = otio.core.serializable_field("visible", required_type=bool, doc="shown or hidden")
        layers = otio.core.serializable_field("layers", required_type=list, doc="Paint.1 / shape objects")
    return Annotation


_ANNOTATION = []


def _annotation_effect(annotation: dict, rate: float, aspect: float):
    shape = annotation["shape"]
    start, end = annotation["start_frame"], annotation["end_frame"]
    layer_range = tl.tr(start, end - start + 1, rate)
    paint = {"OTIO_SCHEMA": "Paint.1", "name": f"vibeboard_annotation_{annotation['id']}",
             "points": _rv_points(shape, aspect), "rgba": shape["rgba"], "type": "color", "brush": "circle",
             "layer_range": json.loads(otio.adapters.write_to_string(layer_range, "otio_json")), "visible": True,
             "vibeboard": {"annotation_id": annotation["id"], "version_id": annotation["version_id"],
                           "note_id": annotation["note_id"], "start_frame": start, "end_frame": end,
                           "shape": shape}}
    if not _ANNOTATION:
        _ANNOTATION.append(_annotation_type())
    # Paint.1 / Point.1 stay plain OTIO JSON objects (unknown schemas keep every field on write)
    layer = otio.adapters.read_from_string(json.dumps(paint), "otio_json")
    return _ANNOTATION[0](name=f"annotation {annotation['id']}", visible=True, layers=[layer])


def shot_timeline(store: DailiesStore, shot: str, fps: float = 24.0, aspect: float = 16 / 9):
    """The shot's versions (oldest first) as an OTIO timeline with notes as markers and annotations as
    OpenRV-style effects."""
    timeline = tl.new_timeline(f"Dailies {shot}", fps)
    video = tl.video_track(timeline)
    for version in reversed(store.stack(shot)):
        rate = version["fps"] or fps
        frames = max(int(version["frames"] or 1), 1)
        clip = tl.make_clip(version["id"], version["path"], rate, 0, frames, frames,
                            {**version["recipe"], "version_id": version["id"], "status": version["status"],
                             "parent": version["parent_id"]})
        for note in store.notes(version_id=version["id"]):
            tl.add_marker(clip, note["text"], note["start_frame"], note["end_frame"] - note["start_frame"] + 1,
                          rate, MARKER_COLORS[note["status"]], metadata={k: note[k] for k in (
                              "id", "status", "author", "kind", "version_id", "start_frame", "end_frame")})
        for annotation in store.annotations(version_id=version["id"]):
            clip.effects.append(_annotation_effect(annotation, rate, aspect))
        video.append(clip)
    return timeline


def import_annotations(otio_path: str) -> List[dict]:
    """The annotations of an exported .otio, as {version_id, start_frame, end_frame, shape, ...}."""
    with open(otio_path, encoding="utf-8") as handle:
        data = json.load(handle)
    found = []

    def walk(node):
        if isinstance(node, dict):
            if node.get("OTIO_SCHEMA", "").startswith("Paint.") and "vibeboard" in node:
                found.append(dict(node["vibeboard"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    walk(data)
    return found


def notes_csv(store: DailiesStore, shot: str, fps: float = 24.0) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["note_id", "shot", "version", "start_frame", "end_frame", "start_tc", "end_tc", "status",
                     "kind", "author", "text"])
    for note in store.notes(shot=shot):
        rate = store.version(note["version_id"])["fps"] or fps
        writer.writerow([note["id"], shot, note["version_id"], note["start_frame"], note["end_frame"],
                         _tc(note["start_frame"], rate), _tc(note["end_frame"], rate), note["status"], note["kind"],
                         note["author"], note["text"]])
    return out.getvalue()


def _tc(frame: int, fps: float) -> str:
    return otio.opentime.to_timecode(tl.rt(frame, fps), fps)


def marker_edl(store: DailiesStore, shot: str, fps: float = 24.0, record_start: int = 0) -> str:
    """Notes as a marker EDL (one 1-frame event per note at its first frame, note range as |D: duration)
    the way Resolve writes and imports timeline markers."""
    ntsc = abs(fps - round(fps)) > 1e-3
    lines = [f"TITLE: {shot} notes", "FCM: NON-DROP FRAME", ""]
    for number, note in enumerate(store.notes(shot=shot), start=1):
        start = note["start_frame"]
        src_in, src_out = _tc(start, fps), _tc(start + 1, fps)
        rec_in, rec_out = _tc(record_start + start, fps), _tc(record_start + start + 1, fps)
        lines.append(f"{number:03d}  001      V     C        {src_in} {src_out} {rec_in} {rec_out}  ")
        text = " ".join(str(note["text"]).split())
        duration = note["end_frame"] - note["start_frame"] + 1
        lines.append(f" |C:{RESOLVE_COLORS[note['status']]} |M:{text} |D:{duration}")
        lines.append("")
    if ntsc:
        lines.insert(2, f"* timecodes counted at {round(fps)} fps non-drop for {fps:.3f} fps media")
    return "\n".join(lines)


EXPORT_FORMATS = ("otio", "csv", "edl")


def export_text(store: DailiesStore, shot: str, fmt: str, fps: float = 24.0) -> str:
    """A shot's review as text in `fmt` (otio | csv | edl)."""
    if fmt == "otio":
        return otio.adapters.write_to_string(shot_timeline(store, shot, fps), "otio_json")
    if fmt == "csv":
        return notes_csv(store, shot, fps)
    if fmt == "edl":
        return marker_edl(store, shot, fps)
    from .store import DailiesError
    raise DailiesError(f"format must be one of {', '.join(EXPORT_FORMATS)}; got {fmt!r}")
