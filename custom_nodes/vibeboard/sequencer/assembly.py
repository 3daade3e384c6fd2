"""Auto-assembly: a shot order (scenes → shots) + a version for each shot → the cut as an OTIO timeline.

The shot order is plain data (a dict, a JSON string or a JSON file):
  {"name": "Ep1", "fps": 24, "width": 640, "height": 360, "start_frame": 86400,
   "shots": [{"shot": "sc01_sh010", "scene": "1", "dissolve_in": 0, "source_in": 8, "duration": 48,
              "path": "optional/explicit.mp4"}, ...]}
Script Lab's asset database will produce this shape through `shot_order_from_scriptlab` (the one place it
plugs in). Which media each shot uses comes from a resolver: Dailies' latest approved version
(`dailies.store.DailiesStore.latest_approved`), or the shot's explicit `path`.
"""
from __future__ import annotations

import json
import os
from typing import Callable, Optional

from ..media import video as video_io
from . import timeline as tl


class AssemblyError(ValueError):
    """The shot order or the versions do not make a cut (the message names the shot)."""


def load_shot_order(source) -> dict:
    """A shot order from a dict, a JSON string or a .json file path."""
    data = source
    if isinstance(source, str):
        text = source.strip()
        if text.startswith("{") or text.startswith("["):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise AssemblyError(f"shot order is not valid JSON: {exc}") from None
        elif os.path.isfile(text):
            with open(text, encoding="utf-8") as handle:
                data = json.load(handle)
        else:
            raise AssemblyError(f"shot order '{text[:80]}' is neither JSON nor an existing file")
    if isinstance(data, list):
        data = {"shots": data}
    if not isinstance(data, dict) or not isinstance(data.get("shots"), list) or not data["shots"]:
        raise AssemblyError("shot order needs a non-empty 'shots' list")
    for i, shot in enumerate(data["shots"]):
        if isinstance(shot, str):
            data["shots"][i] = shot = {"shot": shot}
        if not isinstance(shot, dict) or not shot.get("shot"):
            raise AssemblyError(f"shot order entry {i} needs a 'shot' name")
    return data


def shot_order_from_scriptlab(database, revision_id: Optional[int] = None, **settings) -> dict:
    """The adapter where Script Lab's asset database plugs in: its shots in script order, in the shape above.

    Script Lab (built in parallel) lists them with `vibeboard.scriptlab.exports.shot_list(db, revision_id)` as
    [{"scene", "shot", "description", "workflow", ...}]; `settings` adds fps/width/height/start_frame. Without
    Script Lab installed, pass its JSON export (or any shot list) to `load_shot_order` instead."""
    try:
        from ..scriptlab.exports import shot_list  # optional module
    except ImportError:
        raise AssemblyError("Script Lab is not available in this install: pass the shot order as JSON "
                            "({'shots': [{'shot': 'sc01_sh010', ...}]}) instead") from None
    shots = [{"shot": str(s["shot"]), "scene": str(s.get("scene", "")), "description": s.get("description", ""),
              "workflow": s.get("workflow", "")} for s in shot_list(database, revision_id)]
    return load_shot_order({**settings, "shots": shots})


def assemble(order, resolve: Optional[Callable[[str], Optional[dict]]] = None, name: str = ""):
    """Build the timeline. `resolve(shot)` returns the version to use: {"path", "frames"?, "recipe"?,
    "version"?, "version_id"?, "handles"?} or None (then the shot's own `path` is used, else it is an error).
    Shots play in the order given (Script Lab lists them in script order); a shot name may appear once."""
    data = load_shot_order(order)
    fps = float(data.get("fps", 24))
    timeline = tl.new_timeline(name or data.get("name", "Assembly"), fps, int(data.get("width", 0)),
                               int(data.get("height", 0)), int(data.get("start_frame", 0)))
    video = tl.video_track(timeline)
    missing = []
    names = [shot["shot"] for shot in data["shots"]]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise AssemblyError(f"shot order names these shots more than once: {', '.join(repeated)}")
    for shot in data["shots"]:
        version = resolve(shot["shot"]) if resolve is not None else None
        if version is None and shot.get("path"):
            version = {"path": shot["path"]}
        if version is None:
            missing.append(shot["shot"])
            continue
        path = version["path"]
        if not os.path.isfile(path):
            raise AssemblyError(f"shot '{shot['shot']}': media '{path}' does not exist")
        frames = int(version.get("frames") or video_io.probe_video(path).frame_count)
        handles = int(shot.get("handles", version.get("handles", 0)))
        source_in = int(shot.get("source_in", handles))
        duration = int(shot.get("duration") or frames - source_in - handles)
        if duration <= 0:
            raise AssemblyError(f"shot '{shot['shot']}': {frames} frames leave nothing after {handles} handles")
        recipe = dict(version.get("recipe") or {})
        recipe.update({k: version[k] for k in ("version", "version_id") if k in version})
        recipe["shot"] = shot["shot"]
        clip = tl.make_clip(shot["shot"], path, fps, source_in, duration, frames, recipe)
        dissolve = int(shot.get("dissolve_in", 0)) if len(video) else 0
        tl.append_clip(video, clip, dissolve)
    if missing:
        raise AssemblyError(f"no approved version (and no 'path') for shot(s): {', '.join(missing)}")
    return timeline
