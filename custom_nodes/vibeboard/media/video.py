"""Video through PyAV: stream-decode a file into RGB frames, encode RGB frames (+ audio) into an H.264 MP4.

Plain numpy/torch; no ComfyUI import. Frames are uint8 `[H, W, 3]` numpy arrays inside this module and
float32 IMAGE batches `[T, H, W, 3]` (0..1) at its edges.

Colour: frames are written as BT.709 limited range (tagged so), and read back with the colour matrix
and range the file declares (BT.601 when it declares none, like ffmpeg).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Iterable, Iterator, Optional, Tuple

import av
import numpy as np

from ..common.runtime import NodeInputError
from .audio import AacTrack, decode_audio
from .files import atomic_output

PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
PIX_FMTS = ("yuv420p", "yuv444p")


class NoFramesError(ValueError):
    """The selection (start time, skip, ...) left no frame to load."""


# --- frame rates ----------------------------------------------------------------------------------

def exact_rate(fps) -> Fraction:
    """A FLOAT frame rate as the exact fraction it stands for: 23.976 → 24000/1001, 29.97 → 30000/1001,
    12.5 → 25/2. Integers stay integers; other values get the nearest fraction with denominator ≤ 1001."""
    if isinstance(fps, Fraction):
        rate = fps
    else:
        value = float(fps)
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"frame rate must be a positive number; got {fps!r}")
        if abs(value - round(value)) < 1e-6:
            rate = Fraction(int(round(value)))
        else:
            ntsc = Fraction(int(round(value * 1.001)) * 1000, 1001)  # the n·1000/1001 family
            if ntsc > 0 and abs(float(ntsc) - value) < 1e-3:
                rate = ntsc
            else:
                rate = Fraction(value).limit_denominator(1001)
    if rate <= 0:
        raise ValueError(f"frame rate must be positive; got {fps!r}")
    return rate


def _stream_rate(stream) -> Fraction:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return Fraction(rate)
    return Fraction(24)


# --- probing and reading ---------------------------------------------------------------------------

@dataclass
class VideoInfo:
    width: int
    height: int
    frame_rate: Fraction
    frame_count: int       # from the container, or estimated from the duration
    duration: float        # seconds
    start: float           # stream clock of the first frame, seconds
    codec: str
    pix_fmt: str
    has_audio: bool


def probe_video(path: str) -> VideoInfo:
    """Read the header only (no decoding)."""
    with av.open(path) as container:
        if not container.streams.video:
            raise ValueError(f"'{path}' has no video stream")
        stream = container.streams.video[0]
        rate = _stream_rate(stream)
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        if stream.duration is not None and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        else:
            duration = 0.0
        count = int(stream.frames or 0) or int(round(duration * float(rate)))
        ctx = stream.codec_context
        return VideoInfo(width=ctx.width, height=ctx.height, frame_rate=rate, frame_count=count,
                         duration=duration, start=start, codec=ctx.name, pix_fmt=ctx.pix_fmt or "",
                         has_audio=bool(container.streams.audio))


def output_size(src_w: int, src_h: int, width: int = 0, height: int = 0) -> Tuple[int, int]:
    """Requested size; one side 0 keeps the aspect ratio, both 0 keep the source size."""
    if width <= 0 and height <= 0:
        return src_w, src_h
    if width <= 0:
        return max(int(round(src_w * height / src_h)), 1), height
    if height <= 0:
        return width, max(int(round(src_h * width / src_w)), 1)
    return width, height


def _quarter_turns(frame) -> int:
    """Counter-clockwise quarter turns the display matrix asks for (phones store portrait video this way)."""
    try:
        angle = float(frame.rotation or 0)
    except (AttributeError, TypeError, ValueError):
        return 0
    turns = angle / 90.0
    return int(round(turns)) % 4 if abs(turns - round(turns)) < 1e-3 else 0


def _to_rgb(frame, size: Tuple[int, int], turns: int = 0) -> np.ndarray:
    """Frame → uint8 RGB of displayed size `size` (width, height), rotated upright by `turns`."""
    width, height = size if turns % 2 == 0 else (size[1], size[0])
    shrinking = width * height < frame.width * frame.height
    kwargs = {}
    if frame.color_range:  # 2 = full range (JPEG); 1 = limited; 0 = unknown → swscale's limited default
        kwargs["src_color_range"] = int(frame.color_range)
    out = frame.reformat(width=width, height=height, format="rgb24",
                         interpolation="AREA" if shrinking else "BICUBIC", **kwargs).to_ndarray()
    return np.ascontiguousarray(np.rot90(out, k=turns)) if turns else out


def _timeline(container, stream, start: float, force_rate: Optional[Fraction]):
    """Yield (frame, time) for each output time slot from `start` on.

    Without force_rate: every decoded frame at or after `start`. With force_rate: one slot every
    1/force_rate seconds, each showing the frame on screen at that moment (frames repeat or drop).
    """
    source_rate = float(_stream_rate(stream))
    tol = 0.1 / max(source_rate, float(force_rate or 0))  # timestamps are rounded to the time base
    count = 0

    def frame_time(frame):
        if frame.time is not None:
            return float(frame.time)
        return start + count / source_rate

    if force_rate is None:
        for frame in container.decode(stream):
            when = frame_time(frame)
            count += 1
            if when >= start - tol:
                yield frame, when
        return
    step = 1.0 / float(force_rate)
    slot, previous, previous_end = 0, None, None
    for frame in container.decode(stream):
        when = frame_time(frame)
        count += 1
        while previous is not None and start + slot * step < when - tol:
            yield previous, start + slot * step
            slot += 1
        ticks = getattr(frame, "duration", None)  # PyAV ≥ 13
        duration = float(ticks * frame.time_base) if ticks and frame.time_base else 0.0
        previous, previous_end = frame, when + (duration or 1.0 / source_rate)
    while previous is not None and start + slot * step < previous_end - tol:
        yield previous, start + slot * step
        slot += 1


def iter_video_frames(path: str, *, start_time: float = 0.0, force_rate: float = 0.0,
                      skip_first_frames: int = 0, select_every_nth: int = 1, frame_load_cap: int = 0,
                      width: int = 0, height: int = 0) -> Iterator[Tuple[float, np.ndarray]]:
    """Yield (time in seconds, uint8 [H, W, 3]) for the selected frames, decoding only as far as needed.

    Order of operations: seek to `start_time` → resample to `force_rate` (0 = keep the source timing) →
    drop `skip_first_frames` → keep every `select_every_nth` → stop after `frame_load_cap` (0 = all).
    Only kept frames are converted to RGB. A display rotation of ±90/180° (phone footage) is applied, so
    frames come out upright; the resize options refer to the upright size.
    """
    if select_every_nth < 1:
        raise ValueError("select_every_nth must be at least 1")
    rate = exact_rate(force_rate) if force_rate and force_rate > 0 else None
    container = av.open(path)
    try:
        if not container.streams.video:
            raise ValueError(f"'{path}' has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        origin = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        start = origin + max(float(start_time), 0.0)
        if start_time > 0 and stream.time_base:
            try:  # to the keyframe before `start`; frames before it are decoded and dropped
                container.seek(int(start / stream.time_base), stream=stream)
            except av.error.FFmpegError:
                container.seek(0)
        size, turns = None, 0
        kept = 0
        last_frame, last_rgb = None, None
        for index, (frame, when) in enumerate(_timeline(container, stream, start, rate)):
            if index < skip_first_frames or (index - skip_first_frames) % select_every_nth:
                continue
            if size is None:  # rotation is only known from a decoded frame
                turns = _quarter_turns(frame)
                shown = (frame.width, frame.height) if turns % 2 == 0 else (frame.height, frame.width)
                size = output_size(shown[0], shown[1], width, height)
            if frame is not last_frame:  # force_rate repeats a frame: convert it once
                last_frame, last_rgb = frame, _to_rgb(frame, size, turns)
            yield when - origin, last_rgb
            kept += 1
            if frame_load_cap and kept >= frame_load_cap:
                return
    finally:
        container.close()


@dataclass
class LoadedVideo:
    frames: "object"                 # torch float32 [T, H, W, 3], 0..1
    frame_rate: Fraction             # playback rate of `frames` (force_rate or source rate, / every_nth)
    audio: Optional[Tuple[np.ndarray, int]]  # float32 [C, N] covering the frames' span, or None
    start: float                     # time of the first frame, seconds from the stream start
    info: VideoInfo

    @property
    def fps(self) -> float:
        return float(self.frame_rate)


def load_video(path: str, *, start_time: float = 0.0, force_rate: float = 0.0, skip_first_frames: int = 0,
               select_every_nth: int = 1, frame_load_cap: int = 0, width: int = 0, height: int = 0,
               with_audio: bool = True, progress: Optional[Callable[[int, int], None]] = None,
               reserve: Optional[Callable[[tuple], None]] = None) -> LoadedVideo:
    """Load the selected frames as one float IMAGE batch, plus the audio under them.

    `reserve(shape)` is called with the float batch's expected [frames, height, width, 3] before decoding, and
    again whenever decoding passes that estimate (a container may under-report its length); it raises to stop."""
    import torch

    info = probe_video(path)
    base_rate = exact_rate(force_rate) if force_rate and force_rate > 0 else info.frame_rate
    frame_rate = base_rate / max(select_every_nth, 1)
    expected = max(int((info.duration - max(start_time, 0.0)) * float(base_rate)) - skip_first_frames, 1)
    expected = -(-expected // max(select_every_nth, 1))
    if frame_load_cap:
        expected = min(expected, frame_load_cap)
    out_w, out_h = output_size(info.width, info.height, width, height)
    if reserve is not None:
        reserve((expected, out_h, out_w, 3))
    frames, times = [], []
    for when, rgb in iter_video_frames(path, start_time=start_time, force_rate=force_rate,
                                       skip_first_frames=skip_first_frames, select_every_nth=select_every_nth,
                                       frame_load_cap=frame_load_cap, width=width, height=height):
        frames.append(rgb)
        times.append(when)
        if reserve is not None and len(frames) > expected:
            expected = max(expected * 2, len(frames))
            reserve((expected, rgb.shape[0], rgb.shape[1], 3))
        if progress is not None:
            progress(len(frames), max(expected, len(frames)))
    if not frames:
        raise NoFramesError(f"no frames selected from '{path}' (duration {info.duration:.3f}s, "
                            f"start_time {start_time}, skip_first_frames {skip_first_frames})")
    height_out, width_out = frames[0].shape[:2]
    batch = torch.empty((len(frames), height_out, width_out, 3), dtype=torch.float32)
    for i in range(len(frames)):
        torch.mul(torch.from_numpy(frames[i]), 1.0 / 255.0, out=batch[i])  # one pass; 255 → exactly 1.0
        frames[i] = None  # keep peak memory near the float batch alone
    audio = None
    if with_audio and info.has_audio:
        audio = decode_audio(path, start=info.start + times[0], duration=len(times) / float(frame_rate))
    return LoadedVideo(frames=batch, frame_rate=frame_rate, audio=audio, start=times[0], info=info)


# --- writing ---------------------------------------------------------------------------------------

def check_image_batch(images, node: str, input_name: str = "images"):
    """An IMAGE input fit to encode: [T, H, W, C] with T ≥ 1, C in (1, 3, 4), all values finite.

    Values outside 0..1 are allowed here and clamped when converted to 8 bits."""
    if not hasattr(images, "shape") or not hasattr(images, "ndim"):
        raise NodeInputError(node, input_name, f"expected an IMAGE tensor [T, H, W, 3]; got {type(images).__name__}")
    if images.ndim != 4:
        raise NodeInputError(node, input_name,
                             f"expected an IMAGE batch [T, H, W, 3]; got shape {tuple(images.shape)}")
    frames, height, width, channels = (int(v) for v in images.shape)
    if frames == 0:
        raise NodeInputError(node, input_name, "the image batch is empty (0 frames)")
    if height == 0 or width == 0:
        raise NodeInputError(node, input_name, f"frames have no pixels ({width}x{height})")
    if channels not in (1, 3, 4):
        raise NodeInputError(node, input_name, f"expected 3 colour channels (last axis); got {channels} "
                             f"in shape {tuple(images.shape)}")
    if hasattr(images, "isfinite"):
        finite = bool(images.isfinite().all())
    else:
        finite = bool(np.isfinite(np.asarray(images, dtype=np.float32)).all())
    if not finite:
        raise NodeInputError(node, input_name, "contains NaN or infinite values")
    return images


def image_to_uint8(image) -> np.ndarray:
    """One IMAGE frame [H, W, C] (float 0..1, torch or numpy) → uint8 [H, W, 3]; clamps to 0..1.

    C = 1 is repeated to grey RGB; C = 4 drops alpha."""
    if hasattr(image, "detach"):
        import torch
        image = image.detach().to("cpu", torch.float32)
        scaled = torch.empty_like(image)
        torch.mul(image, 255.0, out=scaled)  # in place from here on: this runs once per frame at full size
        image = scaled.add_(0.5).clamp_(0.0, 255.0).to(torch.uint8).numpy()  # +0.5 then truncate = round
    else:
        image = np.asarray(image)
        if image.dtype != np.uint8:
            image = (np.clip(image.astype(np.float32), 0.0, 1.0) * 255.0).round().astype(np.uint8)
    channels = image.shape[-1]
    if channels == 1:
        image = np.repeat(image, 3, axis=-1)
    elif channels == 4:
        image = image[..., :3]
    return np.ascontiguousarray(image)


def pad_to_even(rgb: np.ndarray) -> np.ndarray:
    """yuv420p needs even sizes: add one row/column at the bottom/right repeating the edge pixels.

    Every source pixel is kept unchanged (no crop, no resample); the file is 1 px larger on odd sides."""
    pad_h, pad_w = rgb.shape[0] % 2, rgb.shape[1] % 2
    if pad_h or pad_w:
        rgb = np.pad(rgb, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return rgb


def _frames_of(images) -> Iterator[np.ndarray]:
    if hasattr(images, "shape") and getattr(images, "ndim", 0) == 4:
        for i in range(images.shape[0]):
            yield image_to_uint8(images[i])
    else:
        for image in images:
            yield image_to_uint8(image)


def _mux_video(container, packets) -> None:
    for packet in packets:
        if not packet.duration:  # x264 leaves it 0; without it the muxer may cut the last frame's time
            packet.duration = 1  # the time base is 1/fps
        container.mux(packet)


# x264 threading: "SLICE" (PyAV's default) or "FRAME" (ffmpeg's). On an H200 host (16 cores), 81 frames at 832x480,
# crf 19 medium: noise-like frames 2.97 s slice / 3.19 s frame, a smooth clip 1.73 / 1.60 (bench/clip_e2e.py):
# no clear winner, so PyAV's default stays.
X264_THREAD_TYPE = "SLICE"


def write_video(path: str, images: Iterable, fps, *, crf: int = 19, preset: str = "medium",
                pix_fmt: str = "yuv420p", audio: Optional[Tuple[np.ndarray, int]] = None,
                on_frame: Optional[Callable[[int], None]] = None, metadata: Optional[dict] = None) -> dict:
    """Encode frames as H.264 (libx264) in an MP4 with +faststart; returns a summary dict.

    `images`: an IMAGE batch [T, H, W, C] or any iterable of [H, W, C] frames (float 0..1 or uint8) —
    a generator is consumed one frame at a time. `fps` may be a float (23.976 → 24000/1001) or a
    Fraction; the time base is exactly 1/fps. `audio` (float32 [C, N], rate) becomes an AAC track trimmed
    or padded with silence to the video's duration. The file appears at `path` only when complete.
    `on_frame(i)` is called after each frame (progress; raising there aborts cleanly).
    `metadata` {key: text} goes into the MP4's metadata as free-form tags (ComfyUI's savers store "prompt" and
    "workflow" there; its frontend restores the workflow when the file is dropped on the canvas).
    """
    rate = exact_rate(fps)
    if not 0 <= int(crf) <= 51:
        raise ValueError(f"crf must be 0..51; got {crf}")
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {PRESETS}; got {preset!r}")
    if pix_fmt not in PIX_FMTS:
        raise ValueError(f"pix_fmt must be one of {PIX_FMTS}; got {pix_fmt!r}")
    frames = iter(_frames_of(images))
    count = 0
    with atomic_output(path) as tmp:
        # The edit list (written when x264 uses B-frames) counts in the movie timescale, 1/1000 s by
        # default: 12 frames at 30000/1001 would end at 0.400 s instead of 0.4004 s. Use one that fits.
        options = {"movflags": "+faststart" + ("+use_metadata_tags" if metadata else ""),
                   "movie_timescale": str(math.lcm(rate.numerator, 1000))}
        with av.open(tmp, "w", format="mp4", options=options) as container:
            for key, value in (metadata or {}).items():
                container.metadata[key] = value
            first = next(frames, None)
            if first is None:
                raise ValueError("no frames to write")
            first = pad_to_even(first) if pix_fmt == "yuv420p" else first
            height, width = first.shape[:2]
            stream = container.add_stream("libx264", rate=rate)
            stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
            stream.codec_context.time_base = 1 / rate
            stream.options = {"crf": str(int(crf)), "preset": preset}
            ctx = stream.codec_context
            ctx.thread_type = X264_THREAD_TYPE
            ctx.colorspace, ctx.color_primaries, ctx.color_trc, ctx.color_range = 1, 1, 1, 1  # BT.709, limited
            track = AacTrack(container, audio[0], audio[1]) if audio is not None and audio[0].size else None
            rgb = first
            while rgb is not None:
                if pix_fmt == "yuv420p":
                    rgb = pad_to_even(rgb)
                if rgb.shape[:2] != (height, width):
                    raise ValueError(f"frame {count} is {rgb.shape[1]}x{rgb.shape[0]}, "
                                     f"the first frame was {width}x{height}")
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                frame = frame.reformat(format=pix_fmt, dst_colorspace="ITU709", dst_color_range=1)
                frame.pts = count
                _mux_video(container, stream.encode(frame))
                count += 1
                if track is not None:
                    track.write_until(Fraction(count) / rate)
                if on_frame is not None:
                    on_frame(count)
                rgb = next(frames, None)
            _mux_video(container, stream.encode(None))
            if track is not None:
                track.finish(Fraction(count) / rate)
    return {"path": path, "frames": count, "width": width, "height": height, "frame_rate": rate,
            "duration": float(Fraction(count) / rate), "audio": track is not None}
