"""Camera path nodes (VB_CAMERA_PATH). Mechanism in path.py / presets.py; these only convert types."""
from __future__ import annotations

import json
import os

from ..common import runtime
from ..common.runtime import NodeInputError, output_directory, unique_output_path
from .path import parse_camera_path
from .presets import EASINGS, PRESETS, path_from_2d, path_from_keyframes, preset_path
from .widget_values import boxes_to_masks, parse_boxes, parse_points

CATEGORY = "VibeBoard/Camera"
_SIZE = {"min": 16, "max": 8192, "step": 16}


def _size_inputs():
    return {
        "num_frames": ("INT", {"default": 81, "min": 1, "max": 4096, "tooltip": "Frames in the path (Wan: 4k+1, e.g. 81)."}),
        "width": ("INT", {"default": 832, **_SIZE, "tooltip": "Image width the intrinsics refer to (pixels)."}),
        "height": ("INT", {"default": 480, **_SIZE, "tooltip": "Image height the intrinsics refer to (pixels)."}),
        "fov_deg": ("FLOAT", {"default": 60.0, "min": 5.0, "max": 170.0, "step": 0.5,
                              "tooltip": "Horizontal field of view of the first frame, degrees."}),
    }


class VBCameraPreset:
    DESCRIPTION = ("Build a camera move from a named preset (pan, tilt, roll, dolly, truck, pedestal, orbit, arc, "
                   "zoom, handheld) with speed, easing and optional seeded shake. OpenCV camera-to-world poses, "
                   "frame 0 = identity. Chain a previous path to play this move after it.")
    CATEGORY = CATEGORY
    FUNCTION = "build"
    RETURN_TYPES = ("VB_CAMERA_PATH", "STRING")
    RETURN_NAMES = ("camera_path", "json")
    OUTPUT_TOOLTIPS = ("the camera move, one pose per frame (after the chained path, if any)",
                       "the path as VibeBoard JSON")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "motion": (PRESETS, {"default": "pan_right", "tooltip": "Camera move (see docs/vfx.md for the exact motion)."}),
                **_size_inputs(),
                "speed": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.05,
                                    "tooltip": "Multiplies the amount of motion (1 = documented default)."}),
                "easing": (EASINGS, {"default": "ease_in_out", "tooltip": "How the motion is spread over time."}),
                "subject_distance": ("FLOAT", {"default": 1.0, "min": 0.01, "max": 1000.0, "step": 0.01,
                                               "tooltip": "Distance to the subject in scene units (dolly/truck/orbit scale)."}),
                "shake": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 5.0, "step": 0.05,
                                    "tooltip": "Extra handheld shake (0 = none, 1 = typical handheld)."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1, "tooltip": "Seed of the shake."}),
            },
            "optional": {
                "previous": ("VB_CAMERA_PATH", {"tooltip": "Play this move after the given path (sequencing moves)."}),
            },
        }

    def build(self, motion, num_frames, width, height, fov_deg, speed, easing, subject_distance, shake, seed,
              previous=None):
        try:
            path = preset_path(motion, num_frames, width, height, speed, easing, fov_deg, subject_distance,
                               shake, seed)
        except ValueError as exc:
            raise NodeInputError(runtime.node_label(VBCameraPreset), "motion", str(exc)) from None
        if previous is not None:
            path = previous.concatenate(path.scaled_to(previous.width, previous.height))
        return (path, path.to_json())


class VBCameraPathDraw:
    DESCRIPTION = ("Camera path from a line drawn over the first frame (canvas widget; the points are stored "
                   "as JSON in 'points'). pan_tilt turns the camera so the frame centre follows the line; truck "
                   "slides the camera so content at subject_distance follows it.")
    CATEGORY = CATEGORY
    FUNCTION = "build"
    RETURN_TYPES = ("VB_CAMERA_PATH", "STRING")
    RETURN_NAMES = ("camera_path", "json")
    OUTPUT_TOOLTIPS = ("the camera path that follows the drawn line", "the path as VibeBoard JSON")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "points": ("STRING", {"default": "{\"points\": [[0.5, 0.5], [0.7, 0.45]]}", "multiline": True,
                                      "tooltip": "JSON {points: [[x, y], ...]} normalised to the frame (y down); "
                                                 "written by the draw widget."}),
                "mode": (["pan_tilt", "truck"], {"default": "pan_tilt", "tooltip": "Rotate (pan/tilt) or translate (truck/pedestal)."}),
                **_size_inputs(),
                "easing": (EASINGS, {"default": "ease_in_out", "tooltip": "Timing along the drawn line."}),
                "subject_distance": ("FLOAT", {"default": 1.0, "min": 0.01, "max": 1000.0, "step": 0.01,
                                               "tooltip": "truck mode: distance of the content that should follow the line."}),
            },
            "optional": {
                "image": ("IMAGE", {"tooltip": "Frame to draw over; when given its size replaces width/height."}),
            },
        }

    def build(self, points, mode, num_frames, width, height, fov_deg, easing, subject_distance, image=None):
        try:
            pts = parse_points(points)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise NodeInputError(runtime.node_label(VBCameraPathDraw), "points", str(exc)) from None
        if not pts:
            raise NodeInputError(runtime.node_label(VBCameraPathDraw), "points", "draw at least one point")
        if image is not None:
            height, width = int(image.shape[1]), int(image.shape[2])
        path = path_from_2d(pts, num_frames, width, height, mode, easing, fov_deg, subject_distance)
        return (path, path.to_json())


class VBCameraKeyframes:
    DESCRIPTION = ("Camera path from keyframes (JSON list of {frame, position [x,y,z], yaw/pitch/roll degrees or "
                   "quaternion [w,x,y,z] or c2w, zoom | fx/fy/cx/cy}); slerp for rotation, lerp for position.")
    CATEGORY = CATEGORY
    FUNCTION = "build"
    RETURN_TYPES = ("VB_CAMERA_PATH", "STRING")
    RETURN_NAMES = ("camera_path", "json")
    OUTPUT_TOOLTIPS = ("the interpolated camera path, one pose per frame", "the path as VibeBoard JSON")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "keyframes": ("STRING", {"multiline": True,
                                         "default": "[{\"frame\": 0}, {\"frame\": 80, \"yaw\": 20, \"position\": [0.2, 0, 0.3]}]",
                                         "tooltip": "JSON list of keyframes."}),
                **_size_inputs(),
                "easing": (EASINGS, {"default": "ease_in_out", "tooltip": "Easing inside each keyframe segment."}),
            }
        }

    def build(self, keyframes, num_frames, width, height, fov_deg, easing):
        try:
            data = json.loads(keyframes)
            path = path_from_keyframes(data, num_frames, width, height, fov_deg, easing)
        except (ValueError, KeyError, TypeError) as exc:
            raise NodeInputError(runtime.node_label(VBCameraKeyframes), "keyframes",
                                 f"{type(exc).__name__}: {exc}") from None
        return (path, path.to_json())


class VBCameraPathImport:
    DESCRIPTION = ("Load a camera path from text: VibeBoard JSON, InfCam/ReCamMaster trajectory JSON, a JSON list of "
                   "ComfyUI WanCameraEmbedding-style "
                   "entries (23 values, c2w) or RealEstate10K/CameraCtrl entries (19 values, w2c), or "
                   "RealEstate10K text lines. Or give a file under the input folder.")
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = ("VB_CAMERA_PATH",)
    RETURN_NAMES = ("camera_path",)
    OUTPUT_TOOLTIPS = ("the loaded camera path, one pose per frame",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "text": ("STRING", {"multiline": True, "default": "", "tooltip": "Path data (any supported format)."}),
                "file": ("STRING", {"default": "", "tooltip": "Or: a file path (relative to the input folder)."}),
                "width": ("INT", {"default": 832, **_SIZE, "tooltip": "Image width for normalised intrinsics."}),
                "height": ("INT", {"default": 480, **_SIZE, "tooltip": "Image height for normalised intrinsics."}),
                "fps": ("FLOAT", {"default": 16.0, "min": 1.0, "max": 240.0, "tooltip": "Frame rate of the path."}),
                "relative_to_first": ("BOOLEAN", {"default": True, "tooltip": "Re-base so frame 0 is the identity. "
                                                  "Turn off for paths already relative to the source camera "
                                                  "(e.g. InfCam's sample trajectories)."}),
            },
            "optional": {
                "infcam_cam": ("INT", {"default": 1, "min": 1, "max": 99, "tooltip": "Which camera of an InfCam / "
                                       "ReCamMaster trajectory JSON (cam01 … cam10)."}),
            }
        }

    @staticmethod
    def _file_path(file: str) -> str:
        from ..common import runtime

        return runtime.user_path(runtime.node_label(VBCameraPathImport), "file", file, runtime.input_directory())

    @classmethod
    def IS_CHANGED(cls, file="", **_):
        # The text widget is part of the cache key already; a file's contents are not: re-run when it changes.
        if not (file or "").strip():
            return ""
        try:
            stat = os.stat(cls._file_path(file.strip()))
        except (OSError, NodeInputError):
            return ""
        return f"{stat.st_mtime_ns}:{stat.st_size}"

    def load(self, text, file, width, height, fps, relative_to_first, infcam_cam=1):
        source = "text"
        if file.strip():
            source = "file"
            path_name = self._file_path(file.strip())
            if not os.path.isfile(path_name):
                raise NodeInputError(runtime.node_label(VBCameraPathImport), "file", f"no such file: {path_name}")
            try:
                with open(path_name, encoding="utf-8") as fh:
                    text = fh.read()
            except (OSError, UnicodeDecodeError) as exc:
                raise NodeInputError(runtime.node_label(VBCameraPathImport), "file",
                                     f"cannot read {path_name} as text: {exc}") from None
        if not text.strip():
            raise NodeInputError(runtime.node_label(VBCameraPathImport), "text", "empty: paste a path or name a file")
        try:
            path = parse_camera_path(text, width, height, fps, cam=infcam_cam)
        except (ValueError, KeyError, TypeError) as exc:
            raise NodeInputError(runtime.node_label(VBCameraPathImport), source,
                                 f"{type(exc).__name__}: {exc}") from None
        return (path.relative_to_first() if relative_to_first else path,)


class VBCameraPathExport:
    DESCRIPTION = "Write a camera path as VibeBoard JSON, RealEstate10K lines or ComfyUI camera entries."
    CATEGORY = CATEGORY
    FUNCTION = "export"
    OUTPUT_NODE = True
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("text",)
    OUTPUT_TOOLTIPS = ("the path in the chosen format (VibeBoard JSON, RealEstate10K lines or ComfyUI entries)",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "camera_path": ("VB_CAMERA_PATH", {"tooltip": "Path to export."}),
                "format": (["vibeboard_json", "realestate10k", "comfy_wan_poses"], {"default": "vibeboard_json",
                                                                                   "tooltip": "Output format."}),
                "filename_prefix": ("STRING", {"default": "vibeboard/camera", "tooltip": "Output file prefix."}),
            }
        }

    def export(self, camera_path, format, filename_prefix):
        if format == "realestate10k":
            text, ext = camera_path.to_realestate10k(), "txt"
        elif format == "comfy_wan_poses":
            text, ext = json.dumps(camera_path.to_comfy_wan_poses()), "json"
        else:
            text, ext = camera_path.to_json(indent=1), "json"
        from ..media.files import atomic_output
        path, subfolder, name = unique_output_path(output_directory(), filename_prefix, ext,
                                                   runtime.node_label(VBCameraPathExport))
        with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        return {"ui": {"files": [{"filename": name, "subfolder": subfolder, "type": "output"}]}, "result": (text,)}


class VBCameraToWanEmbedding:
    DESCRIPTION = ("Plücker camera embedding in the layout of ComfyUI's WanCameraEmbedding output, for Wan "
                   "Fun-Control camera conditioning (WanCameraImageToVideo).")
    CATEGORY = CATEGORY
    FUNCTION = "embed"
    RETURN_TYPES = ("WAN_CAMERA_EMBEDDING", "INT", "INT", "INT")
    RETURN_NAMES = ("camera_embedding", "width", "height", "length")
    OUTPUT_TOOLTIPS = ("Plücker embedding for WanCameraImageToVideo", "frame width the embedding was made for",
                       "frame height the embedding was made for", "number of frames")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"camera_path": ("VB_CAMERA_PATH", {"tooltip": "Path to embed (resampled to its own length)."})}}

    def embed(self, camera_path):
        emb = camera_path.wan_camera_embedding()
        return (emb, camera_path.width, camera_path.height, len(camera_path))


class VBBoxesDraw:
    DESCRIPTION = ("Boxes drawn over a frame (canvas widget; stored as JSON in 'boxes'), output as per-frame MASK "
                   "and as JSON for the box conditioner.")
    CATEGORY = CATEGORY
    FUNCTION = "build"
    RETURN_TYPES = ("MASK", "STRING")
    RETURN_NAMES = ("mask", "boxes_json")
    OUTPUT_TOOLTIPS = ("per-frame mask of the drawn boxes (1 inside a box)",
                       "the boxes as JSON for the box conditioner")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "boxes": ("STRING", {"multiline": True, "default": "{\"boxes\": []}",
                                     "tooltip": "JSON {boxes: [{x0, y0, x1, y1, label, frame_start, frame_end}]} "
                                                "normalised to the frame; written by the box widget."}),
                "num_frames": ("INT", {"default": 81, "min": 1, "max": 4096, "tooltip": "Frames of the mask."}),
                "width": ("INT", {"default": 832, **_SIZE, "tooltip": "Mask width (replaced by the image's)."}),
                "height": ("INT", {"default": 480, **_SIZE, "tooltip": "Mask height (replaced by the image's)."}),
            },
            "optional": {"image": ("IMAGE", {"tooltip": "Frame to draw over; sets the mask size."})},
        }

    def build(self, boxes, num_frames, width, height, image=None):
        try:
            parsed = parse_boxes(boxes)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise NodeInputError(runtime.node_label(VBBoxesDraw), "boxes", str(exc)) from None
        if image is not None:
            height, width = int(image.shape[1]), int(image.shape[2])
        from ..common import budget  # float masks [frames, height, width], before drawing them
        budget.check(runtime.node_label(VBBoxesDraw), "num_frames", (num_frames, height, width), "the box masks")
        return (boxes_to_masks(parsed, num_frames, height, width), json.dumps({"boxes": parsed}))


NODE_CLASS_MAPPINGS = {
    "VBCameraPreset": VBCameraPreset,
    "VBCameraPathDraw": VBCameraPathDraw,
    "VBCameraKeyframes": VBCameraKeyframes,
    "VBCameraPathImport": VBCameraPathImport,
    "VBCameraPathExport": VBCameraPathExport,
    "VBCameraToWanEmbedding": VBCameraToWanEmbedding,
    "VBBoxesDraw": VBBoxesDraw,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "VBCameraPreset": "Camera Preset (VibeBoard)",
    "VBCameraPathDraw": "Camera Path — Draw (VibeBoard)",
    "VBCameraKeyframes": "Camera Keyframes (VibeBoard)",
    "VBCameraPathImport": "Camera Path Import (VibeBoard)",
    "VBCameraPathExport": "Camera Path Export (VibeBoard)",
    "VBCameraToWanEmbedding": "Camera → Wan Camera Embedding (VibeBoard)",
    "VBBoxesDraw": "Boxes — Draw (VibeBoard)",
}
