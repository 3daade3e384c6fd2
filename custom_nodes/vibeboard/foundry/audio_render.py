"""Audio + portrait → talking-head MP4 on the one Wan runtime, driven by the InfiniteTalk/MultiTalk audio adapter
(`talking_audio.py`): the blueprint's chunk → generate → stitch → mux flow.

As upstream's long-video modes: the clip is cut into segments of `segment_frames` (4k+1, upstream 81) output
frames, each later one starting on the last `motion_frames` frames of the one before, which it continues from and
which are dropped when stitching, so no frame is duplicated or missing. The last segment is aligned to the end of
the clip (it then starts earlier inside the previous one), so the stitched clip has exactly round(duration × fps)
frames. Two anchors:
- "motion" (MultiTalk's `generate(..., motion_frame=1)`): the segment's first frame — the previous segment's last —
  is its I2V first frame (mask 1 on that pixel frame) and its CLIP image, its latent held clean at every step as
  upstream re-imposes `latent_motion_frames`;
- "reference" (InfiniteTalk's streaming mode, motion_frame 9): the portrait stays the I2V first frame and CLIP image
  of every segment, and the VAE latents of the `motion_frames` context frames (1 + (m−1)/4 latent frames) are held
  clean at the head of the segment's latents.
Audio features are computed once for the whole clip at the video frame rate and each segment takes the windows
of its own frames (upstream clamps windows to the whole audio, not to the segment).

Every segment is one `wan.sampler.sample()` call on a handle whose model adapter is the audio adapter.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, List, Optional

import numpy as np
import torch

from ..wan import conditioning as C
from ..wan import sampler as S
from . import performance as perf
from . import talking_audio as A

ADAPTER_PART = "infinitetalk"


@dataclass
class TalkSettings:
    segment_frames: int = 81      # upstream frame_num
    motion_frames: int = 1        # frames each later segment continues from (MultiTalk 1 here; InfiniteTalk 9)
    anchor: str = "motion"        # "motion" (MultiTalk) | "reference" (InfiniteTalk): see the module docstring
    fps: float = 25.0             # upstream assumes 25 fps video for its audio features
    steps: int = 40
    shift: float = 7.0            # upstream's 480p shift (11 at 720p)
    text_cfg: float = 5.0
    audio_cfg: float = 4.0
    seed: int = 42
    scheduler: str = "euler"      # upstream: Euler on linspace(1000, 1) shifted, then 0
    batch_cfg: bool = True        # the guidance rows in one forward (False: one at a time, upstream's memory)


def plan(total: int, segment_frames: int, motion_frames: int = 1) -> List[perf.Segment]:
    """Segments over `total` output frames: starts 0, L−m, 2(L−m), … (each on the previous one's last m frames),
    the last one aligned to the end. `keep_from` = frames at its head already owned by earlier segments (≥ m)."""
    if (segment_frames - 1) % 4 or segment_frames < 5:
        raise ValueError(f"segment_frames must be 4k+1 ≥ 5 (e.g. 81), got {segment_frames}")
    if (motion_frames - 1) % 4 or not 1 <= motion_frames < segment_frames:
        raise ValueError(f"motion_frames must be 4k+1 and below segment_frames, got {motion_frames}")
    if total < 1:
        raise ValueError("the audio is shorter than one video frame")
    if total <= segment_frames:
        return [perf.Segment(0, 0, total, 0, 0.0, 0.0)]
    starts, s = [], 0
    while s + segment_frames < total:
        starts.append(s)
        s += segment_frames - motion_frames
    starts.append(total - segment_frames)
    out, owned = [], 0
    for i, start in enumerate(starts):
        out.append(perf.Segment(i, start, segment_frames, max(0, owned - start), 0.0, 0.0))
        owned = start + segment_frames
    return out


def _owned_frame(segments: List[perf.Segment], videos: List[torch.Tensor], t: int) -> torch.Tensor:
    """Output frame t as the stitcher keeps it: from the segment that owns it (the last segment aligned to the end
    may start inside a frame range owned by an earlier segment than the one just before it)."""
    for seg, video in zip(segments, videos):
        if seg.start_frame + seg.keep_from <= t < seg.start_frame + seg.frames:
            return video[t - seg.start_frame]
    raise IndexError(f"frame {t} is not rendered yet")


def register_adapter(handle, adapter: A.InfiniteTalkAdapter):
    """A copy of `handle` whose model adapter is `adapter` (registered with the handle's VRAM manager)."""
    key = f"{ADAPTER_PART}:module:{id(adapter)}"
    handle.manager.register(key, adapter, mode="resident")
    talk = handle.with_parts(**{ADAPTER_PART: key})
    talk.adapter = ADAPTER_PART
    return talk


def render_segment(handle, first: torch.Tensor, windows: torch.Tensor, prompt_embeds: torch.Tensor,
                   negative_embeds: torch.Tensor, settings: TalkSettings, frames: int, height: int, width: int,
                   seed: int, motion: Optional[torch.Tensor] = None) -> torch.Tensor:
    """One segment: I2V first frame IMAGE [1,H,W,3] + this segment's wav2vec windows [frames, 5, L, C] → IMAGE
    [frames, H, W, 3] through `wan.sampler.sample()` (handle = `register_adapter(...)`). `motion` (IMAGE [m,H,W,3]):
    frames whose latents are held at the head instead of the first frame's (InfiniteTalk's motion frames)."""
    concat = C.i2v_concat(handle, frames, height, width, first=first)
    image_tokens = C.clip_image_tokens(handle, first)
    shape = C.latent_shape(handle, frames, height, width)
    if motion is None:
        head = concat[:, 4:, :1]                # the first frame's normalised latent
    else:
        video = C.images_to_video(C.resize_frames(motion, height, width))
        head = C.normalize(handle, C.vae_encode(handle, video))
    held = torch.zeros(shape)
    held[:, :, :head.shape[2]] = head           # held clean at every step
    mask = torch.zeros(1, 1, shape[2], 1, 1)
    mask[:, :, :head.shape[2]] = 1
    cond = C.WanConditioning(
        prompt_embeds=prompt_embeds, image_embeds=image_tokens, concat_latents=concat,
        holds=[C.HeldRegion(held, mask, "clean")],
        extra={"infinitetalk": {"windows": windows, "negative": negative_embeds, "text_cfg": settings.text_cfg,
                                "audio_cfg": settings.audio_cfg, "batch": settings.batch_cfg}})
    # cfg 1: the adapter applies upstream's text + audio guidance itself (three rows per step)
    sampler = S.SamplerSettings(steps=settings.steps, cfg=1.0, shift=settings.shift, scheduler=settings.scheduler,
                                seed=seed)
    raw = S.sample(handle, cond, sampler, shape)
    return C.vae_decode_images(handle, raw)[:frames]


def talking_head(handle, adapter: A.InfiniteTalkAdapter, wav2vec, image: torch.Tensor, waveform: np.ndarray,
                 rate: int, prompt_embeds: torch.Tensor, negative_embeds: torch.Tensor, out_path: Optional[str],
                 settings: Optional[TalkSettings] = None, height: int = 480, width: int = 832,
                 on_segment: Optional[Callable[[int, int, torch.Tensor], None]] = None) -> dict:
    """The whole path: portrait IMAGE [1,H,W,3] + speech (float32 [C,N] at `rate`) → exactly round(duration × fps)
    frames ("clip", IMAGE) and, given `out_path`, an MP4 there with the speech muxed as AAC 48 kHz. `wav2vec` =
    (extractor, model) from `talking_audio.load_wav2vec`. Returns {"path", "frames", "segments", "summary",
    "clip"}."""
    from ..media.video import write_video
    settings = settings or TalkSettings()
    if settings.anchor not in ("motion", "reference") or (settings.anchor == "motion" and settings.motion_frames != 1):
        raise ValueError(f"anchor must be 'motion' (with 1 motion frame) or 'reference', got {settings.anchor!r} "
                         f"with {settings.motion_frames} motion frames")
    if not handle.has("image_encoder"):
        raise A.AudioAdapterError("the Wan I2V model needs its CLIP vision encoder (the I2V image context)")
    duration = waveform.shape[1] / float(rate)
    total = perf.output_frame_count(duration, settings.fps)
    features = A.wav2vec_features(*wav2vec, A.prepare_speech(waveform, rate), total)
    if features.shape[1] * features.shape[2] != adapter.audio_proj.feature_dim:
        raise A.AudioAdapterError(f"the audio encoder gives {features.shape[1]}×{features.shape[2]} features per "
                                  f"frame; the adapter was trained on {adapter.audio_proj.feature_dim}")
    talk = register_adapter(handle, adapter)
    segments = plan(total, settings.segment_frames, settings.motion_frames)
    portrait = C.resize_frames(image[:1, ..., :3].float(), height, width)
    videos: List[torch.Tensor] = []
    for seg in segments:
        first, motion = portrait, None
        if seg.index > 0:  # the frames this segment starts on, as they stand in the stitched clip
            context = torch.stack([_owned_frame(segments, videos, t)
                                   for t in range(seg.start_frame, seg.start_frame + settings.motion_frames)])
            if settings.anchor == "motion":
                first = context[:1]
            else:
                motion = context
        render = 4 * math.ceil((seg.frames - 1) / 4) + 1   # a short clip still renders 4k+1 frames
        windows = A.audio_windows(features, torch.arange(seg.start_frame, seg.start_frame + render))
        video = render_segment(talk, first, windows, prompt_embeds, negative_embeds, settings, render, height,
                               width, settings.seed + seg.index, motion)[:seg.frames]
        videos.append(video)
        if on_segment is not None:
            on_segment(seg.index + 1, len(segments), video)
    clip = perf.stitch(segments, videos, total, crossfade=False)
    summary = write_video(out_path, clip, settings.fps, audio=perf.to_48k(waveform, rate)) if out_path else None
    for seg in segments:
        seg.audio_start, seg.audio_end = seg.start_frame / settings.fps, (seg.start_frame + seg.frames) / settings.fps
    return {"path": out_path, "frames": total, "segments": [s.__dict__ for s in segments], "summary": summary,
            "clip": clip}
