"""The cut as an OpenTimelineIO Timeline: the single source of truth of the Sequencer.

Every clip VibeBoard generated carries its recipe in `clip.metadata["vibeboard"]` (job id, workflow, seed, model
ids, prompt, parent, shot, version), so any clip can be re-rendered later and the edit keeps its cut points.
Times are whole frames at the timeline rate; a dissolve is an OTIO `SMPTE_Dissolve` transition centred on the
cut (`in_offset` frames before it, `out_offset` after), which needs that many handle frames in the media.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from typing import List, Optional

import opentimelineio as otio

RECIPE_KEYS = ("job_id", "workflow", "seed", "model_ids", "prompt", "parent", "shot", "version", "version_id")
VIDEO_TRACK = "V1"
DIALOGUE_TRACK = "A1 Dialogue"
MUSIC_TRACK = "A2 Music"


class TimelineError(ValueError):
    """A timeline that cannot be built or edited as asked (the message says which clip/frame)."""


def rt(frames: float, rate: float) -> otio.opentime.RationalTime:
    return otio.opentime.RationalTime(float(frames), float(rate))


def tr(start: float, duration: float, rate: float) -> otio.opentime.TimeRange:
    return otio.opentime.TimeRange(rt(start, rate), rt(duration, rate))


def media_url(path: str) -> str:
    """file:// URL of a local file (what Resolve, Kdenlive and the otioz bundler expect)."""
    return otio.url_utils.url_from_filepath(os.path.abspath(path))


def media_path(clip) -> Optional[str]:
    """Local path of a clip's media, or None (missing reference, remote URL)."""
    ref = clip.media_reference
    url = getattr(ref, "target_url", None)
    if not url:
        return None
    if url.startswith("file:") or "://" not in url:
        return otio.url_utils.filepath_from_url(url) if url.startswith("file:") else url
    return None


def new_timeline(name: str, fps: float, width: int = 0, height: int = 0, start_frame: int = 0):
    """An empty timeline with one video track and dialogue/music audio tracks.

    `start_frame` is the record start (86400 at 24 fps = 01:00:00:00, the broadcast habit)."""
    if fps <= 0:
        raise TimelineError(f"frame rate must be positive; got {fps}")
    timeline = otio.schema.Timeline(name=name)
    timeline.global_start_time = rt(start_frame, fps)
    timeline.metadata["vibeboard"] = {"fps": float(fps), "width": int(width), "height": int(height)}
    timeline.tracks.append(otio.schema.Track(name=VIDEO_TRACK, kind=otio.schema.TrackKind.Video))
    for name_ in (DIALOGUE_TRACK, MUSIC_TRACK):
        timeline.tracks.append(otio.schema.Track(name=name_, kind=otio.schema.TrackKind.Audio))
    return timeline


def timeline_rate(timeline) -> float:
    meta = timeline.metadata.get("vibeboard", {})
    if "fps" in meta:
        return float(meta["fps"])
    if timeline.global_start_time is not None:
        return float(timeline.global_start_time.rate)
    return 24.0


def track(timeline, name: str):
    for candidate in timeline.tracks:
        if candidate.name == name:
            return candidate
    raise TimelineError(f"timeline '{timeline.name}' has no track named '{name}'")


def video_track(timeline):
    video = [t for t in timeline.tracks if t.kind == otio.schema.TrackKind.Video]
    if not video:
        raise TimelineError(f"timeline '{timeline.name}' has no video track")
    return video[0]


def clean_recipe(recipe: Optional[dict]) -> dict:
    """The recipe as plain JSON-able data (OTIO metadata refuses arbitrary objects)."""
    import json
    try:
        return json.loads(json.dumps(recipe or {}, default=str))
    except (TypeError, ValueError) as exc:
        raise TimelineError(f"recipe is not JSON data: {exc}") from None


def make_clip(name: str, path: str, fps: float, source_start: int, duration: int,
              available_frames: Optional[int] = None, recipe: Optional[dict] = None):
    """A clip showing frames [source_start, source_start + duration) of the media file at `path`.

    `available_frames` is the media's length; it bounds the handles a dissolve may use."""
    if duration <= 0:
        raise TimelineError(f"clip '{name}': duration must be at least one frame; got {duration}")
    if source_start < 0:
        raise TimelineError(f"clip '{name}': source start must be >= 0; got {source_start}")
    if available_frames is not None and source_start + duration > available_frames:
        raise TimelineError(f"clip '{name}': frames {source_start}..{source_start + duration - 1} asked for, "
                            f"the media has only {available_frames} frames")
    ref = otio.schema.ExternalReference(target_url=media_url(path))
    if available_frames is not None:
        ref.available_range = tr(0, available_frames, fps)
    clip = otio.schema.Clip(name=name, media_reference=ref, source_range=tr(source_start, duration, fps))
    clip.metadata["vibeboard"] = clean_recipe(recipe)
    return clip


def plain(value):
    """OTIO metadata (AnyDictionary / AnyVector) as plain dicts and lists, so it compares and serialises."""
    if hasattr(value, "items"):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or type(value).__name__ == "AnyVector":
        return [plain(v) for v in value]
    return value


def recipe_of(clip) -> dict:
    return plain(clip.metadata.get("vibeboard", {}))


def append_clip(track_, clip, dissolve_frames: int = 0) -> None:
    """Append `clip`, with a centred dissolve from the previous clip when `dissolve_frames` > 0."""
    if dissolve_frames > 0:
        if not any(isinstance(c, otio.schema.Clip) for c in track_):
            raise TimelineError(f"clip '{clip.name}': a dissolve needs a clip before it on track '{track_.name}'")
        rate = clip.source_range.duration.rate
        half_in = dissolve_frames // 2
        track_.append(otio.schema.Transition(name=f"Dissolve to {clip.name}",
                                             transition_type=otio.schema.TransitionTypes.SMPTE_Dissolve,
                                             in_offset=rt(half_in, rate),
                                             out_offset=rt(dissolve_frames - half_in, rate)))
    track_.append(clip)


def add_marker(item, name: str, start: int, duration: int, rate: float, color: str = "RED",
               comment: str = "", metadata: Optional[dict] = None):
    marker = otio.schema.Marker(name=name, marked_range=tr(start, duration, rate), color=color,
                                metadata={"vibeboard": clean_recipe(metadata)} if metadata else {})
    if comment:
        marker.comment = comment
    item.markers.append(marker)
    return marker


@dataclass
class Cut:
    """One clip as placed on the record side."""
    index: int               # position among the track's clips
    name: str
    record_start: int        # frame on the timeline (0 = first frame, global start not added)
    duration: int
    source_start: int
    path: Optional[str]
    recipe: dict
    handle_before: int       # media frames available before source_start
    handle_after: int        # media frames available after the last used frame


def cuts(track_) -> List[Cut]:
    """The clips of a track with their record positions, in order."""
    out = []
    clips = [c for c in track_ if isinstance(c, otio.schema.Clip)]
    for index, clip in enumerate(clips):
        placed = track_.range_of_child(clip)
        src = clip.source_range
        available = clip.media_reference.available_range if clip.media_reference else None
        before = after = 0
        if available is not None:
            before = int(round(src.start_time.value - available.start_time.to_frames(src.start_time.rate)))
            end_avail = available.end_time_exclusive().rescaled_to(src.start_time.rate).value
            after = int(round(end_avail - src.end_time_exclusive().value))
        out.append(Cut(index=index, name=clip.name, record_start=int(round(placed.start_time.value)),
                       duration=int(round(src.duration.value)), source_start=int(round(src.start_time.value)),
                       path=media_path(clip), recipe=recipe_of(clip), handle_before=before, handle_after=after))
    return out


def transitions(track_):
    """[(outgoing clip index, Transition)] for each transition on the track."""
    out, clip_index = [], -1
    for item in track_:
        if isinstance(item, otio.schema.Clip):
            clip_index += 1
        elif isinstance(item, otio.schema.Transition):
            out.append((clip_index, item))
    return out


def check_handles(track_) -> List[str]:
    """Problems with dissolves whose clips lack handle frames (empty list = every dissolve is renderable)."""
    problems = []
    placed = cuts(track_)
    for outgoing, transition in transitions(track_):
        if outgoing < 0 or outgoing + 1 >= len(placed):
            problems.append(f"transition '{transition.name}' is not between two clips")
            continue
        a, b = placed[outgoing], placed[outgoing + 1]
        need_after = int(round(transition.out_offset.value))
        need_before = int(round(transition.in_offset.value))
        if a.handle_after < need_after:
            problems.append(f"dissolve '{transition.name}' needs {need_after} handle frames after clip "
                            f"'{a.name}' (source frame {a.source_start + a.duration}..), the media has "
                            f"{max(a.handle_after, 0)}")
        if b.handle_before < need_before:
            problems.append(f"dissolve '{transition.name}' needs {need_before} handle frames before clip "
                            f"'{b.name}' (source frame {b.source_start}), the media has {max(b.handle_before, 0)}")
    return problems


def duration_frames(timeline) -> int:
    rate = timeline_rate(timeline)
    return int(round(timeline.tracks.duration().rescaled_to(rate).value))


def replace_media(timeline, clip_name: str, new_path: str, new_available_frames: int, handles_before: int,
                  recipe_update: Optional[dict] = None):
    """Regenerate in place: point clip `clip_name` at new media rendered with `handles_before` extra frames at
    its start. The record position and duration stay; only the source offset and the media change."""
    result = copy.deepcopy(timeline)
    for clip in result.find_clips():
        if clip.name != clip_name:
            continue
        src = clip.source_range
        rate = src.duration.rate
        clip.media_reference = otio.schema.ExternalReference(target_url=media_url(new_path),
                                                             available_range=tr(0, new_available_frames, rate))
        clip.source_range = tr(handles_before, src.duration.value, rate)
        if handles_before + src.duration.value > new_available_frames:
            raise TimelineError(f"clip '{clip_name}': new media has {new_available_frames} frames, needs "
                                f"{handles_before + int(src.duration.value)}")
        meta = recipe_of(clip)
        meta.update(clean_recipe(recipe_update))
        clip.metadata["vibeboard"] = meta
        return result
    raise TimelineError(f"no clip named '{clip_name}' in timeline '{timeline.name}'")


def summary(timeline) -> dict:
    """A JSON-able description: cut points, dissolves, markers (what tests and reports compare)."""
    rate = timeline_rate(timeline)
    tracks = []
    for t in timeline.tracks:
        entry = {"name": t.name, "kind": t.kind,
                 "clips": [{"name": c.name, "record": [c.record_start, c.duration],
                            "source": [c.source_start, c.duration], "recipe": c.recipe} for c in cuts(t)],
                 "transitions": [{"after_clip": i, "in": int(x.in_offset.value), "out": int(x.out_offset.value)}
                                 for i, x in transitions(t)]}
        tracks.append(entry)
    markers = [{"name": m.name, "range": [int(m.marked_range.start_time.value), int(m.marked_range.duration.value)]}
               for m in timeline.tracks.markers]
    return {"name": timeline.name, "fps": rate, "duration": duration_frames(timeline), "tracks": tracks,
            "markers": markers, "start_frame": int(round(timeline.global_start_time.value))
            if timeline.global_start_time is not None else 0}
