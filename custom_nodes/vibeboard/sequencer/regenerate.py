"""Regenerate in place: re-render a clip of the cut from the recipe in its metadata, longer by handle frames,
and swap the media while the cut points stay.

A clip can be regenerated when its recipe carries the job that made it:
  {"prompt_graph": {API-format workflow}, "length_input": ["<node id>", "<input name>"],
   "output_node": "<node id whose saved video is the clip>",     (optional: else the first .mp4 written)
   "length_rule": "any" | "4k+1"}                                 (Wan's VAE wants 4k+1 frames)
`plan()` makes the job (the graph with the frame count raised by 2 × handles, rounded up to the rule), `run()`
executes it with VibeBoard's embedded executor and calls `timeline.replace_media` with `handles` frames before the
first used frame. A diffusion model asked for more frames does not reproduce the old pixels exactly: the result is
a new take of the shot, which is why Dailies keeps it as a new version.
"""
from __future__ import annotations

import copy
import math

from . import timeline as tl
from .timeline import TimelineError


def _round_to_rule(frames: int, rule: str) -> int:
    if rule == "4k+1":
        return 4 * math.ceil((frames - 1) / 4) + 1
    return frames


def plan(timeline, clip_name: str, handles: int) -> dict:
    """The re-render job for `clip_name` with `handles` extra frames on each side."""
    if handles < 0:
        raise TimelineError(f"handles must be >= 0; got {handles}")
    clips = [c for c in timeline.find_clips() if c.name == clip_name]
    if not clips:
        raise TimelineError(f"no clip named '{clip_name}' in timeline '{timeline.name}'")
    recipe = tl.recipe_of(clips[0])
    graph, length = recipe.get("prompt_graph"), recipe.get("length_input")
    if not isinstance(graph, dict) or not (isinstance(length, list) and len(length) == 2):
        raise TimelineError(f"clip '{clip_name}' cannot be regenerated: its recipe has no 'prompt_graph' and "
                            "'length_input' (the job that made it)")
    node_id, input_name = str(length[0]), str(length[1])
    if node_id not in graph or input_name not in graph[node_id].get("inputs", {}):
        raise TimelineError(f"clip '{clip_name}': recipe's length_input {length} is not in its prompt_graph")
    duration = int(round(clips[0].source_range.duration.value))
    frames = _round_to_rule(duration + 2 * handles, str(recipe.get("length_rule", "any")))
    job = copy.deepcopy(graph)
    job[node_id]["inputs"][input_name] = frames
    return {"clip": clip_name, "graph": job, "frames": frames, "handles_before": handles,
            "output_node": recipe.get("output_node"), "recipe": recipe}


def run(timeline, job: dict, executor) -> tuple:
    """Execute `job` (from plan) with a runner Executor; returns (new timeline, the new media path)."""
    result = executor.execute(job["graph"])
    if result.status != "success":
        raise TimelineError(f"re-render of clip '{job['clip']}' failed: {result.error}")
    outputs = [f for f in result.output_files() if f["filename"].endswith(".mp4")
               and (job["output_node"] is None or f["node"] == str(job["output_node"]))]
    if not outputs:
        raise TimelineError(f"re-render of clip '{job['clip']}' wrote no MP4")
    path = outputs[0]["path"]
    from ..media import video as video_io
    frames = video_io.probe_video(path).frame_count
    update = {"handles": job["handles_before"], "regenerated_frames": frames,
              "prompt_graph": job["graph"]}
    return tl.replace_media(timeline, job["clip"], path, frames, job["handles_before"], update), path


def regenerate(timeline, clip_name: str, handles: int, executor) -> tuple:
    return run(timeline, plan(timeline, clip_name, handles), executor)
