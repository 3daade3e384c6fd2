"""Video and audio IO nodes (PyAV). Thin: the work is in video.py / audio.py / files.py."""
from __future__ import annotations

import json

import math
import os

from ..common import budget, runtime
from ..common.runtime import NodeInputError
from . import audio as audio_io
from . import files
from . import video as video_io

CATEGORY = "VibeBoard/Media"

LOAD_NAME = "Load Video (VibeBoard)"
SAVE_NAME = "Save Video MP4 (VibeBoard)"
PREVIEW_NAME = "Preview Video (VibeBoard)"
SAVE_AUDIO_NAME = "Save Audio (VibeBoard)"


def _folder(kind: str) -> str:
    return {"input": runtime.input_directory, "output": runtime.output_directory,
            "temp": runtime.temp_directory}[kind]()


def resolve_video(video: str = "", video_path: str = "") -> str:
    """The file a VBLoadVideo reads: `video_path` when given (absolute, or relative to the input folder),
    else the combo name inside the input folder (sub-folders and ' [output]'/' [temp]' annotations allowed,
    absolute paths and '..' refused)."""
    override = (video_path or "").strip()
    if override:
        path = runtime.user_path(LOAD_NAME, "video_path", override, runtime.input_directory())
        if not os.path.isfile(path):
            raise NodeInputError(LOAD_NAME, "video_path", f"file not found: '{path}'")
        return path
    name, kind = files.split_annotation(video or "")
    if not name:
        raise NodeInputError(LOAD_NAME, "video", "no video chosen: pick a file from the input folder "
                             "(or upload one), or set video_path")
    folder = _folder(kind)
    try:
        path = files.safe_join(folder, name)
    except files.UnsafeNameError as exc:
        raise NodeInputError(LOAD_NAME, "video", str(exc)) from None
    if not os.path.isfile(path):
        raise NodeInputError(LOAD_NAME, "video", f"'{name}' not found in the {kind} folder ({folder})")
    return path


def _file_entry(path: str, directory: str, kind: str) -> dict:
    folder, name = os.path.split(path)
    subfolder = os.path.relpath(os.path.realpath(folder), os.path.realpath(directory))
    return {"filename": name, "subfolder": "" if subfolder == "." else subfolder, "type": kind}


def _video_entry(path: str, directory: str, kind: str) -> dict:
    return {**_file_entry(path, directory, kind), "format": "video/mp4"}


def _reserve(directory: str, prefix: str, ext: str, node: str) -> str:
    path, _, _ = runtime.unique_output_path(directory, prefix, ext, node)
    return path


def _check_fps(fps, node: str) -> float:
    try:
        value = float(fps)
    except (TypeError, ValueError):
        raise NodeInputError(node, "fps", f"{fps!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise NodeInputError(node, "fps", f"must be a positive frame rate; got {fps!r}")
    return value


def _audio_or_none(audio, node: str):
    """AUDIO input → (waveform, rate), or None when absent or empty (a silent-video load)."""
    if audio is None:
        return None
    waveform, rate = audio_io.audio_from_input(audio, node)
    return (waveform, rate) if waveform.shape[1] > 0 else None


def _encode(images, fps, directory, prefix, crf, preset, audio, node: str, metadata=None) -> str:
    video_io.check_image_batch(images, node)
    fps = _check_fps(fps, node)
    if not 0 <= int(crf) <= 51:
        raise NodeInputError(node, "crf", f"must be 0..51; got {crf}")
    if preset not in video_io.PRESETS:
        raise NodeInputError(node, "preset", f"must be one of {', '.join(video_io.PRESETS)}; got {preset!r}")
    track = _audio_or_none(audio, node)
    path = _reserve(directory, prefix, "mp4", node)
    total = int(images.shape[0])
    bar = runtime.progress_bar(total)
    video_io.write_video(path, images, fps, crf=int(crf), preset=preset, audio=track,
                         on_frame=lambda done: bar.update_absolute(done, total), metadata=metadata)
    return path


def recipe_metadata(prompt, extra_pnginfo) -> dict:
    """What ComfyUI's savers embed: the API prompt and each extra_pnginfo entry (the UI workflow), as JSON text;
    dropping the file on the editor's canvas reopens the workflow."""
    metadata = {}
    if prompt is not None:
        metadata["prompt"] = json.dumps(prompt)
    for key, value in (extra_pnginfo or {}).items() if isinstance(extra_pnginfo, dict) else ():
        metadata[str(key)] = json.dumps(value)
    return metadata


class VBLoadVideo:
    DESCRIPTION = ("Load a video file into IMAGE frames [T,H,W,3] plus its AUDIO (zero samples when the file "
                   "has no sound), the frame rate of the loaded frames and their count. Decodes only what "
                   "the options select.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "AUDIO", "FLOAT", "INT")
    RETURN_NAMES = ("images", "audio", "fps", "frame_count")
    OUTPUT_TOOLTIPS = ("the selected frames, float 0..1", "the audio under the selected frames",
                       "playback rate of the loaded frames (force_rate or the source rate, / select_every_nth)",
                       "number of frames loaded")
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        videos = files.list_files(runtime.input_directory(), files.VIDEO_EXTENSIONS)
        return {
            "required": {
                "video": (videos, {"video_upload": True,
                                   "tooltip": "a video in ComfyUI's input folder (upload adds one)"}),
                "frame_load_cap": ("INT", {"default": 0, "min": 0, "max": 1_000_000,
                                           "tooltip": "stop after this many frames (0 = no limit)"}),
                "skip_first_frames": ("INT", {"default": 0, "min": 0, "max": 1_000_000,
                                              "tooltip": "drop this many frames first (after force_rate)"}),
                "select_every_nth": ("INT", {"default": 1, "min": 1, "max": 1000,
                                             "tooltip": "keep every n-th frame (1 = all)"}),
                "force_rate": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1000.0, "step": 0.001,
                                         "tooltip": "resample to this frame rate by timestamps, "
                                                    "repeating or dropping frames (0 = source rate)"}),
                "custom_width": ("INT", {"default": 0, "min": 0, "max": 16384,
                                         "tooltip": "resize width (0 = keep; with height set, keeps aspect)"}),
                "custom_height": ("INT", {"default": 0, "min": 0, "max": 16384,
                                          "tooltip": "resize height (0 = keep; with width set, keeps aspect)"}),
                "start_time": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1e6, "step": 0.001,
                                         "tooltip": "start this many seconds into the video (seeks)"}),
            },
            "optional": {
                "video_path": ("STRING", {"default": "", "tooltip": "overrides `video` when not empty: an "
                                          "absolute path, or a path relative to the input folder"}),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, video=None, video_path=None, input_types=None):
        # Asking for input_types turns off the host's link type check for this node, so do it here.
        spec = cls.INPUT_TYPES()
        declared = {**spec["required"], **spec["optional"]}
        for name, received in (input_types or {}).items():
            expected = declared.get(name, (None,))[0]
            if isinstance(expected, str) and received not in (expected, "*"):
                return f"{LOAD_NAME}: input '{name}': expects {expected}, got a {received} link"
        if "video_path" in (input_types or {}) or (video is None and video_path is None):
            return True  # the path comes from a link: checked when the node runs
        try:
            resolve_video(video or "", video_path or "")
        except NodeInputError as exc:
            return str(exc)
        return True

    @classmethod
    def IS_CHANGED(cls, video=None, video_path=None, **_):
        try:
            return files.file_fingerprint(resolve_video(video or "", video_path or ""))
        except (NodeInputError, OSError):
            return ""  # validation reports the missing file

    def load(self, video="", frame_load_cap=0, skip_first_frames=0, select_every_nth=1, force_rate=0.0,
             custom_width=0, custom_height=0, start_time=0.0, video_path=""):
        import av

        path = resolve_video(video, video_path)
        source = "video_path" if (video_path or "").strip() else "video"
        if not math.isfinite(float(force_rate)) or force_rate < 0:
            raise NodeInputError(LOAD_NAME, "force_rate", f"must be 0 or a positive rate; got {force_rate}")
        bar = runtime.progress_bar(max(int(frame_load_cap), 1))
        try:
            loaded = video_io.load_video(
                path, start_time=float(start_time), force_rate=float(force_rate),
                skip_first_frames=int(skip_first_frames), select_every_nth=int(select_every_nth),
                frame_load_cap=int(frame_load_cap), width=int(custom_width), height=int(custom_height),
                progress=lambda done, total: bar.update_absolute(done, total),
                reserve=lambda shape: budget.check(LOAD_NAME, "frame_load_cap", shape, "the decoded frames"))
        except video_io.NoFramesError as exc:
            raise NodeInputError(LOAD_NAME, "start_time/skip_first_frames", str(exc)) from None
        except (av.error.InvalidDataError, av.error.FileNotFoundError) as exc:
            raise NodeInputError(LOAD_NAME, source, f"cannot read '{path}' as video: {exc}") from None
        except ValueError as exc:  # e.g. no video stream
            raise NodeInputError(LOAD_NAME, source, str(exc)) from None
        if loaded.audio is not None:
            audio = audio_io.to_audio_dict(*loaded.audio)
        else:
            audio = audio_io.empty_audio()
        return (loaded.frames, audio, loaded.fps, int(loaded.frames.shape[0]))


_ENCODE_INPUTS = {
    "fps": ("FLOAT", {"default": 24.0, "min": 0.01, "max": 1000.0, "step": 0.001,
                      "tooltip": "frames per second; 23.976 / 29.97 / 59.94 are written as exact n·1000/1001"}),
}


class VBSaveVideo:
    DESCRIPTION = ("Save IMAGE frames (+ optional AUDIO) as an H.264 MP4 (yuv420p, BT.709, +faststart) in the "
                   "output folder. Odd sizes are padded by one edge-repeating row/column; values are clamped "
                   "to 0..1; audio becomes AAC cut or padded to the video length.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("path",)
    OUTPUT_TOOLTIPS = ("absolute path of the written MP4",)
    OUTPUT_NODE = True
    FUNCTION = "save"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "frames [T,H,W,3], float 0..1"}),
                **_ENCODE_INPUTS,
                "filename_prefix": ("STRING", {"default": "vibeboard/video",
                                               "tooltip": "name prefix, may contain sub-folders of the output "
                                                          "folder; a counter is appended"}),
                "crf": ("INT", {"default": 19, "min": 0, "max": 51,
                                "tooltip": "quality: 0 lossless-ish, 17-23 typical, 51 worst"}),
                "preset": (list(video_io.PRESETS), {"default": "medium",
                                                    "tooltip": "x264 speed/size trade-off"}),
            },
            "optional": {
                "audio": ("AUDIO", {"tooltip": "muxed as AAC; cut or padded with silence to the video length"}),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    def save(self, images, fps=24.0, filename_prefix="vibeboard/video", crf=19, preset="medium", audio=None,
             prompt=None, extra_pnginfo=None):
        directory = runtime.output_directory()
        path = _encode(images, fps, directory, filename_prefix, crf, preset, audio, SAVE_NAME,
                       metadata=recipe_metadata(prompt, extra_pnginfo))
        return {"ui": {"images": [_video_entry(path, directory, "output")], "animated": [True]},
                "result": (path,)}


class VBPreviewVideo:
    DESCRIPTION = "Show IMAGE frames (+ optional AUDIO) as an MP4 in the UI; the file goes to the temp folder."
    CATEGORY = CATEGORY
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "preview"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {"images": ("IMAGE", {"tooltip": "frames [T,H,W,3], float 0..1"}), **_ENCODE_INPUTS},
            "optional": {"audio": ("AUDIO", {"tooltip": "played with the preview"})},
        }

    def preview(self, images, fps=24.0, audio=None):
        directory = runtime.temp_directory()
        path = _encode(images, fps, directory, "vibeboard_preview", 20, "veryfast", audio, PREVIEW_NAME)
        return {"ui": {"images": [_video_entry(path, directory, "temp")], "animated": [True]}}


class VBSaveAudio:
    DESCRIPTION = "Save AUDIO as 16-bit FLAC or WAV in the output folder (samples clipped to -1..1)."
    CATEGORY = CATEGORY
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("path",)
    OUTPUT_TOOLTIPS = ("absolute path of the written audio file",)
    OUTPUT_NODE = True
    FUNCTION = "save"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "audio": ("AUDIO", {"tooltip": "waveform [B,C,N] + sample_rate; the first batch item is saved"}),
                "filename_prefix": ("STRING", {"default": "vibeboard/audio",
                                               "tooltip": "name prefix inside the output folder"}),
                "format": (list(audio_io.AUDIO_FORMATS), {"default": "flac",
                                                          "tooltip": "flac (lossless, smaller) or wav"}),
            },
        }

    def save(self, audio, filename_prefix="vibeboard/audio", format="flac"):
        waveform, rate = audio_io.audio_from_input(audio, SAVE_AUDIO_NAME)
        if waveform.shape[1] == 0:
            raise NodeInputError(SAVE_AUDIO_NAME, "audio", "the audio has no samples (a video without sound?)")
        if format not in audio_io.AUDIO_FORMATS:
            raise NodeInputError(SAVE_AUDIO_NAME, "format", f"must be one of {list(audio_io.AUDIO_FORMATS)}")
        directory = runtime.output_directory()
        path = _reserve(directory, filename_prefix, format, SAVE_AUDIO_NAME)
        audio_io.save_audio_file(path, waveform, rate, format)
        return {"ui": {"audio": [_file_entry(path, directory, "output")]}, "result": (path,)}


NODE_CLASS_MAPPINGS = {
    "VBLoadVideo": VBLoadVideo,
    "VBSaveVideo": VBSaveVideo,
    "VBPreviewVideo": VBPreviewVideo,
    "VBSaveAudio": VBSaveAudio,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "VBLoadVideo": LOAD_NAME,
    "VBSaveVideo": SAVE_NAME,
    "VBPreviewVideo": PREVIEW_NAME,
    "VBSaveAudio": SAVE_AUDIO_NAME,
}
