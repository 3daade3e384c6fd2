"""Stagecraft nodes (thin): blocking document in, diagram / continuity report / previz animatic / boxes /
camera paths out; Unreal Remote Control and NitroGen bridges; CustomX's training-free parts."""
from __future__ import annotations

import json
import os
import re

import numpy as np
import torch

from ..common import runtime
from ..common.runtime import NodeInputError, output_directory, unique_output_path
from ..media.files import UnsafeNameError, safe_join

CATEGORY = "VibeBoard/Stagecraft"
PACK_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
SAMPLES = os.path.join(PACK_ROOT, "workflows", "inputs")
BLOCKING_TIP = "Blocking document: a .json in the input folder, sample:<name> for a shipped one, or the JSON itself."


def _read_blocking(node: str, value: str) -> str:
    text = (value or "").strip()
    if text.startswith("{"):
        return text
    try:
        if text.startswith("sample:"):
            path = safe_join(SAMPLES, text[len("sample:"):].strip())
        else:
            path = runtime.user_path(node, "blocking", text, runtime.input_directory())
    except UnsafeNameError as exc:
        raise NodeInputError(node, "blocking", str(exc)) from None
    if not os.path.isfile(path):
        raise NodeInputError(node, "blocking", f"file not found: {path}")
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def _save_text(prefix: str, ext: str, text: str) -> dict:
    path, subfolder, name = unique_output_path(output_directory(), prefix, ext)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return {"filename": name, "subfolder": subfolder, "type": "output"}


class VBBlockingLoad:
    DESCRIPTION = ("Read a blocking document (set, actors, props, cameras with lenses, beats, shots; JSON, see "
                   "docs/stagecraft.md) as VB_BLOCKING. Errors name the field that is wrong.")
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = ("VB_BLOCKING", "STRING")
    RETURN_NAMES = ("blocking", "summary")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"blocking": ("STRING", {"default": "sample:stagecraft_blocking.json", "multiline": True,
                                                     "tooltip": BLOCKING_TIP})}}

    def load(self, blocking):
        from .blocking import Blocking, BlockingError

        try:
            doc = Blocking.parse(_read_blocking("Blocking Load", blocking))
        except BlockingError as exc:
            raise NodeInputError("Blocking Load", "blocking", str(exc)) from None
        shots = ", ".join(f"{s['name']} ({s['camera']}, {len(doc.shot_frames(s['name']))} f)"
                          for s in doc.data["shots"])
        return (doc, f"{len(doc.data['actors'])} actors, {len(doc.data['cameras'])} cameras, shots: {shots}")


class VBBlockingDiagram:
    DESCRIPTION = "Top-down blocking diagram: set, props, actors with facing and paths, camera FOV wedges, line of action."
    CATEGORY = CATEGORY
    FUNCTION = "run"
    OUTPUT_NODE = True
    RETURN_TYPES = ("IMAGE", "STRING")
    RETURN_NAMES = ("diagram", "svg")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "blocking": ("VB_BLOCKING", {"tooltip": "From Blocking Load."}),
            "frame": ("INT", {"default": 0, "min": 0, "max": 100000, "tooltip": "Scene frame to draw."}),
            "size": ("INT", {"default": 512, "min": 128, "max": 4096, "tooltip": "Square size in pixels."}),
            "save_svg": ("BOOLEAN", {"default": True, "tooltip": "Also write the SVG to the output folder."}),
        }}

    def run(self, blocking, frame, size, save_svg):
        from . import diagram

        text = diagram.svg(blocking, frame, size)
        img = torch.from_numpy(diagram.image(blocking, frame, size).astype(np.float32) / 255.0)[None]
        ui = {"files": [_save_text("vibeboard/stagecraft/diagram", "svg", text)]} if save_svg else {}
        return {"ui": ui, "result": (img, text)}


class VBContinuityCheck:
    DESCRIPTION = ("Check the cuts between consecutive shots before rendering: 180° line, 30° rule / jump cuts, "
                   "eyeline match, screen direction. Warnings name the beat and the cameras.")
    CATEGORY = CATEGORY
    FUNCTION = "run"
    OUTPUT_NODE = True
    RETURN_TYPES = ("STRING", "BOOLEAN")
    RETURN_NAMES = ("report", "ok")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"blocking": ("VB_BLOCKING", {"tooltip": "From Blocking Load."})}}

    def run(self, blocking):
        from .continuity import check

        report = check(blocking)
        text = json.dumps(report, indent=1)
        lines = [w["message"] for w in report["warnings"]] or [f"{report['cuts']} cut(s): no continuity problems"]
        return {"ui": {"text": lines, "files": [_save_text("vibeboard/stagecraft/continuity", "json", text)]},
                "result": (text, report["ok"])}


class VBPrevizAnimatic:
    DESCRIPTION = ("Previz animatic: the blocking's grey-box set (floor, props, actor proxies; optionally the Asset "
                   "Bin scene GLB) through each shot's camera and lens, cut together as an MP4. Pure-Python "
                   "rasteriser: headless, CPU, no Blender needed.")
    CATEGORY = CATEGORY
    FUNCTION = "run"
    OUTPUT_NODE = True
    RETURN_TYPES = ("IMAGE", "STRING")
    RETURN_NAMES = ("frames", "mp4_path")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "blocking": ("VB_BLOCKING", {"tooltip": "From Blocking Load."}),
            "width": ("INT", {"default": 0, "min": 0, "max": 3840, "tooltip": "0 = the document's width."}),
            "height": ("INT", {"default": 0, "min": 0, "max": 2160, "tooltip": "0 = the document's height."}),
            "filename_prefix": ("STRING", {"default": "vibeboard/stagecraft/animatic", "tooltip": "Output name."}),
        }, "optional": {
            "set_glb": ("STRING", {"default": "", "tooltip": "Scene GLB (e.g. Deconstruct scene's glb_path); empty = "
                                                             "the document's set.glb, if any."}),
        }}

    def run(self, blocking, width, height, filename_prefix, set_glb=""):
        from .previz import render_shot
        from ..media.video import write_video

        node = "Previz Animatic"
        glb = None
        if set_glb.strip():
            glb = runtime.user_path(node, "set_glb", set_glb, output_directory())
        elif blocking.data["set"].get("glb"):
            try:  # a path inside the document is file content: it stays inside the input folder
                glb = safe_join(runtime.input_directory(), str(blocking.data["set"]["glb"]))
            except UnsafeNameError as exc:
                raise NodeInputError(node, "blocking", f"set.glb: {exc}") from None
        if glb is not None and not os.path.isfile(glb):
            raise NodeInputError(node, "set_glb", f"file not found: {glb}")
        shots = blocking.data["shots"]
        total = sum(len(blocking.shot_frames(s["name"])) for s in shots)
        bar = runtime.progress_bar(total)
        frames = []
        for s in shots:
            f, _ = render_shot(blocking, s["name"], width or None, height or None, glb,
                               on_frame=lambda i: bar.update(1))
            frames.append(f)
        frames = np.concatenate(frames)
        path, subfolder, name = unique_output_path(output_directory(), filename_prefix.strip() or "animatic", "mp4")
        write_video(path, frames, blocking.fps)
        ui = {"files": [{"filename": name, "subfolder": subfolder, "type": "output"}]}
        return {"ui": ui, "result": (torch.from_numpy(frames), path)}


class VBBlockingToBoxes:
    DESCRIPTION = "Per-frame actor boxes of one shot as VB_BOXES (for ReCo / region generation in Shot Studio)."
    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES = ("VB_BOXES", "STRING")
    RETURN_NAMES = ("boxes", "json")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"blocking": ("VB_BLOCKING", {"tooltip": "From Blocking Load."}),
                             "shot": ("STRING", {"default": "1", "tooltip": "Shot name."})}}

    def run(self, blocking, shot):
        from .blocking import BlockingError
        from .handoff import shot_boxes

        try:
            boxes = shot_boxes(blocking, shot)
        except BlockingError as exc:
            raise NodeInputError("Blocking → Boxes", "shot", str(exc)) from None
        return (boxes, json.dumps(boxes.to_json()))


class VBBlockingToCameraPath:
    DESCRIPTION = ("One shot's camera (position, aim, lens) as VB_CAMERA_PATH for InfCam / Spatia; `relative` "
                   "re-bases it on its first frame like the pack's presets.")
    CATEGORY = CATEGORY
    FUNCTION = "run"
    OUTPUT_NODE = True
    RETURN_TYPES = ("VB_CAMERA_PATH", "STRING")
    RETURN_NAMES = ("camera_path", "json")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"blocking": ("VB_BLOCKING", {"tooltip": "From Blocking Load."}),
                             "shot": ("STRING", {"default": "1", "tooltip": "Shot name."}),
                             "relative": ("BOOLEAN", {"default": False, "tooltip": "Re-base on the first frame."})}}

    def run(self, blocking, shot, relative):
        from .blocking import BlockingError
        from .handoff import shot_camera_path

        try:
            path = shot_camera_path(blocking, shot, relative_to_first=relative)
        except BlockingError as exc:
            raise NodeInputError("Blocking → Camera Path", "shot", str(exc)) from None
        text = path.to_json()
        safe = re.sub(r"[^\w-]+", "_", str(shot)).strip("_") or "shot"
        return {"ui": {"files": [_save_text(f"vibeboard/stagecraft/camera_{safe}", "json", text)]},
                "result": (path, text)}


NODE_CLASS_MAPPINGS = {
    "VBBlockingLoad": VBBlockingLoad,
    "VBBlockingDiagram": VBBlockingDiagram,
    "VBContinuityCheck": VBContinuityCheck,
    "VBPrevizAnimatic": VBPrevizAnimatic,
    "VBBlockingToBoxes": VBBlockingToBoxes,
    "VBBlockingToCameraPath": VBBlockingToCameraPath,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "VBBlockingLoad": "Blocking Load (VibeBoard)",
    "VBBlockingDiagram": "Blocking Diagram — top-down (VibeBoard)",
    "VBContinuityCheck": "Continuity Check — 180°/30°/eyeline (VibeBoard)",
    "VBPrevizAnimatic": "Previz Animatic → MP4 (VibeBoard)",
    "VBBlockingToBoxes": "Blocking → Boxes (VibeBoard)",
    "VBBlockingToCameraPath": "Blocking → Camera Path (VibeBoard)",
}
