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
from ..media.files import UnsafeNameError, atomic_output, safe_join

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
    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:  # no empty leftover on failure
        handle.write(text)
    return {"filename": name, "subfolder": subfolder, "type": "output"}


class VBBlockingLoad:
    DESCRIPTION = ("Read a blocking document (set, actors, props, cameras with lenses, beats, shots; JSON, see "
                   "docs/stagecraft.md) as VB_BLOCKING. Errors name the field that is wrong.")
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = ("VB_BLOCKING", "STRING")
    RETURN_NAMES = ("blocking", "summary")
    OUTPUT_TOOLTIPS = ("the blocking document", "counts of actors, props, cameras, beats and shots")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"blocking": ("STRING", {"default": "sample:stagecraft_blocking.json", "multiline": True,
                                                     "tooltip": BLOCKING_TIP})}}

    def load(self, blocking):
        from .blocking import Blocking, BlockingError

        node = runtime.node_label(VBBlockingLoad)
        try:
            doc = Blocking.parse(_read_blocking(node, blocking))
        except BlockingError as exc:
            raise NodeInputError(node, "blocking", str(exc)) from None
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
    OUTPUT_TOOLTIPS = ("the top-down diagram, float 0..1", "the diagram as SVG text")

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
    OUTPUT_TOOLTIPS = ("the warnings, naming beat and cameras (empty when none)", "true when no rule is broken")

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
    OUTPUT_TOOLTIPS = ("the animatic frames, float 0..1", "path of the animatic MP4")

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

        node = runtime.node_label(VBPrevizAnimatic)
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
    OUTPUT_TOOLTIPS = ("per-frame actor boxes of the shot", "the boxes as JSON")

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
            raise NodeInputError(runtime.node_label(VBBlockingToBoxes), "shot", str(exc)) from None
        return (boxes, json.dumps(boxes.to_json()))


class VBBlockingToCameraPath:
    DESCRIPTION = ("One shot's camera (position, aim, lens) as VB_CAMERA_PATH for InfCam / Spatia; `relative` "
                   "re-bases it on its first frame like the pack's presets.")
    CATEGORY = CATEGORY
    FUNCTION = "run"
    OUTPUT_NODE = True
    RETURN_TYPES = ("VB_CAMERA_PATH", "STRING")
    RETURN_NAMES = ("camera_path", "json")
    OUTPUT_TOOLTIPS = ("the shot's camera path, one pose per frame", "the path as VibeBoard JSON")

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
            raise NodeInputError(runtime.node_label(VBBlockingToCameraPath), "shot", str(exc)) from None
        text = path.to_json()
        safe = re.sub(r"[^\w-]+", "_", str(shot)).strip("_") or "shot"
        return {"ui": {"files": [_save_text(f"vibeboard/stagecraft/camera_{safe}", "json", text)]},
                "result": (path, text)}


def _json_map(node: str, input_name: str, text: str) -> dict:
    text = (text or "").strip()
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise NodeInputError(node, input_name, f"not JSON: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise NodeInputError(node, input_name, 'expected {"name": "/Game/Map.Map:PersistentLevel.Actor"}')
    return data


class VBUnrealApplyBeat:
    DESCRIPTION = ("Pose an Unreal Editor set at a blocking frame over the Remote Control API (HTTP 30010): actors "
                   "and camera actors moved (K2_SetActorLocationAndRotation, metres → cm, Y-up → Z-up), camera "
                   "FOV set from the lens. Loopback by default; LAN only with allow_lan; never the internet. "
                   "Needs a running editor with the Remote Control plugin.")
    CATEGORY = CATEGORY
    FUNCTION = "run"
    OUTPUT_NODE = True
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("report",)
    OUTPUT_TOOLTIPS = ("what was moved in the editor",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "blocking": ("VB_BLOCKING", {"tooltip": "From Blocking Load."}),
            "frame": ("INT", {"default": 0, "min": 0, "max": 100000, "tooltip": "Scene frame to pose."}),
            "host": ("STRING", {"default": "127.0.0.1", "tooltip": "Editor host (loopback or, with allow_lan, LAN)."}),
            "port": ("INT", {"default": 30010, "min": 1, "max": 65535, "tooltip": "Remote Control HTTP port."}),
            "allow_lan": ("BOOLEAN", {"default": False, "tooltip": "Allow a private-network editor."}),
            "actor_paths": ("STRING", {"default": "{}", "multiline": True,
                                       "tooltip": 'JSON {"bob": "/Game/Map.Map:PersistentLevel.Bob"}'}),
            "camera_paths": ("STRING", {"default": "{}", "multiline": True,
                                        "tooltip": 'JSON {"A": "/Game/Map.Map:PersistentLevel.CineCameraActor_A"}'}),
            "camera_components": ("STRING", {"default": "{}", "multiline": True,
                                             "tooltip": 'JSON {"A": "…CineCameraActor_A.CameraComponent"} (FOV)'}),
        }}

    def run(self, blocking, frame, host, port, allow_lan, actor_paths, camera_paths, camera_components):
        from .unreal import UnrealError, UnrealRefused, UnrealRemote, beat_requests

        node = runtime.node_label(VBUnrealApplyBeat)
        actors = _json_map(node, "actor_paths", actor_paths)
        cams = _json_map(node, "camera_paths", camera_paths)
        comps = _json_map(node, "camera_components", camera_components)
        unknown = [a for a in actors if a not in blocking.actor_names()]
        if unknown:
            raise NodeInputError(node, "actor_paths", f"not in the blocking: {unknown}")
        try:
            client = UnrealRemote(host.strip(), port, allow_lan)
            reply = client.batch(beat_requests(blocking, frame, actors, cams, comps))
        except UnrealRefused as exc:
            raise NodeInputError(node, "host", str(exc)) from None
        except UnrealError as exc:
            raise NodeInputError(node, "host", str(exc)) from None
        return {"ui": {"text": [f"posed {len(actors)} actor(s), {len(cams)} camera(s) at frame {frame}"]},
                "result": (json.dumps(reply),)}


class VBNitroGenActions:
    DESCRIPTION = ("Game frames → gamepad action chunks from a NitroGen server (VibeBoard's authenticated, "
                   "pickle-free protocol on loopback; see docs/stagecraft.md to start one with ng.pt). Returns "
                   "the decoded gamepad states and timed input events for an engine bridge. Needs the server.")
    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES = ("STRING", "STRING")
    RETURN_NAMES = ("actions", "events")
    OUTPUT_TOOLTIPS = ("JSON: decoded gamepad states per chunk", "JSON: timed input events for an engine bridge")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "frames": ("IMAGE", {"tooltip": "Game frames; each gets one action chunk (the model sees one frame)."}),
            "host": ("STRING", {"default": "127.0.0.1", "tooltip": "NitroGen server host."}),
            "port": ("INT", {"default": 5555, "min": 1, "max": 65535, "tooltip": "NitroGen server port."}),
            "token": ("STRING", {"default": "", "tooltip": "The server's token (≥ 16 characters)."}),
            "allow_menu": ("BOOLEAN", {"default": False, "tooltip": "Let START / GUIDE / BACK through."}),
        }}

    def run(self, frames, host, port, token, allow_menu):
        from .nitrogen import decode_actions, to_engine_events
        from .nitrogen_server import NitroGenClient, ProtocolError, _is_loopback

        node = runtime.node_label(VBNitroGenActions)
        if not _is_loopback(host.strip()):
            raise NodeInputError(node, "host", "NitroGen is reached on loopback only (tunnel a remote GPU over SSH)")
        client = NitroGenClient(host.strip(), port, token)
        steps = []
        try:
            for i in range(frames.shape[0]):
                img = (frames[i].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
                steps += decode_actions(client.predict(img), allow_menu)
        except (ProtocolError, OSError, ValueError) as exc:
            raise NodeInputError(node, "host", f"NitroGen server: {exc}") from None
        finally:
            client.close()
        return (json.dumps(steps), json.dumps(to_engine_events(steps)))


class VBCustomXConditioning:
    DESCRIPTION = ("CustomX's training-free conditioning for one shot: the scene video along the shot's camera "
                   "(the previz grey-box set, or the Asset Bin GLB) and the character anchor masks from the "
                   "blocking. The 13B HunyuanCustom + CustomX LoRA generation itself needs the authors' code "
                   "and weights (docs/stagecraft.md).")
    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES = ("IMAGE", "MASK")
    RETURN_NAMES = ("scene_video", "anchor_masks")
    OUTPUT_TOOLTIPS = ("the scene rendered along the shot's camera", "per-frame character anchor masks")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "blocking": ("VB_BLOCKING", {"tooltip": "From Blocking Load."}),
            "shot": ("STRING", {"default": "1", "tooltip": "Shot name."}),
            "character": ("STRING", {"default": "", "tooltip": "Actor placed by CustomX (hidden from the scene "
                                                                "video, drawn as the anchor mask); empty = all."}),
        }}

    def run(self, blocking, shot, character):
        from .blocking import BlockingError
        from .customx import anchor_masks
        from .handoff import shot_boxes
        from .previz import render_shot

        node = runtime.node_label(VBCustomXConditioning)
        names = [character.strip()] if character.strip() else blocking.actor_names()
        unknown = [n for n in names if n not in blocking.actor_names()]
        if unknown:
            raise NodeInputError(node, "character", f"not in the blocking: {unknown}")
        try:
            boxes = shot_boxes(blocking, shot)
            boxes.boxes = [b for b in boxes.boxes if b.label in names]
            # the scene video shows the set without the character(s) CustomX will place
            frames, _ = render_shot(blocking, shot, hide=names)
        except BlockingError as exc:
            raise NodeInputError(node, "shot", str(exc)) from None
        masks = anchor_masks(boxes, frames.shape[0], frames.shape[1], frames.shape[2])
        return (torch.from_numpy(frames), masks.float())


NODE_CLASS_MAPPINGS = {
    "VBBlockingLoad": VBBlockingLoad,
    "VBBlockingDiagram": VBBlockingDiagram,
    "VBContinuityCheck": VBContinuityCheck,
    "VBPrevizAnimatic": VBPrevizAnimatic,
    "VBBlockingToBoxes": VBBlockingToBoxes,
    "VBBlockingToCameraPath": VBBlockingToCameraPath,
    "VBUnrealApplyBeat": VBUnrealApplyBeat,
    "VBNitroGenActions": VBNitroGenActions,
    "VBCustomXConditioning": VBCustomXConditioning,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "VBBlockingLoad": "Blocking Load (VibeBoard)",
    "VBBlockingDiagram": "Blocking Diagram — top-down (VibeBoard)",
    "VBContinuityCheck": "Continuity Check — 180°/30°/eyeline (VibeBoard)",
    "VBPrevizAnimatic": "Previz Animatic → MP4 (VibeBoard)",
    "VBBlockingToBoxes": "Blocking → Boxes (VibeBoard)",
    "VBBlockingToCameraPath": "Blocking → Camera Path (VibeBoard)",
    "VBUnrealApplyBeat": "Unreal Apply Beat — Remote Control (VibeBoard)",
    "VBNitroGenActions": "NitroGen Actions — pixels → gamepad (VibeBoard)",
    "VBCustomXConditioning": "CustomX Conditioning — scene video + anchors (VibeBoard)",
}
