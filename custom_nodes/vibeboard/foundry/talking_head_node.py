"""Talking Head from Audio node: InfiniteTalk/MultiTalk's audio adapter on a Wan I2V model (`audio_render`,
`talking_audio`). Registered through `foundry/nodes.py`."""
from __future__ import annotations

import os

from ..common import runtime
from ..common.runtime import NodeInputError

CATEGORY = "VibeBoard/Character Foundry"

_TALK_CACHE: dict = {}
TALK_CONTINUATION = {"portrait + 9 motion frames (InfiniteTalk)": ("reference", 9),
                     "last frame (MultiTalk)": ("motion", 1)}


def _cached(kind: str, path: str, make):
    """One loaded adapter / audio encoder per file version (a re-run does not re-read 10 GB)."""
    key = (kind, path, os.path.getmtime(path))
    if key not in _TALK_CACHE:
        for old in [k for k in _TALK_CACHE if k[:2] == key[:2]]:
            _TALK_CACHE.pop(old)
        _TALK_CACHE[key] = make()
    return _TALK_CACHE[key]


class VBTalkingHead:
    DESCRIPTION = ("Performance from audio: a portrait speaks the given speech. InfiniteTalk/MultiTalk's audio adapter "
                   "on a Wan2.1-I2V-14B model (Wan Model Loader with its CLIP vision): the speech is cut into "
                   "segments, each rendered by the Wan sampler starting on the previous segment's last frame, and "
                   "stitched with no frame duplicated or missing. Wire frames + audio into a video saver. Needs "
                   "weights: the adapter (vibeboard models pull infinitetalk) and chinese-wav2vec2-base.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "AUDIO")
    RETURN_NAMES = ("frames", "audio")
    OUTPUT_TOOLTIPS = ("the performance, one IMAGE per frame at the output frame rate",
                       "the speech, trimmed to the video's length (wire both into Save Video to mux AAC)")
    FUNCTION = "perform"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "wan": ("VB_WAN", {"tooltip": "Wan2.1-I2V-14B (480P) loaded with its CLIP vision encoder"}),
            "text": ("VB_WAN_TEXT", {"tooltip": "Encoded prompt and negative prompt (Wan Text Encode)"}),
            "portrait": ("IMAGE", {"tooltip": "The actor's first frame"}),
            "speech": ("AUDIO", {"tooltip": "The line, from a file or ElevenLabs Speech"}),
            "adapter": ("STRING", {"default": "InfiniteTalk/single/infinitetalk.safetensors",
                                   "tooltip": "Audio adapter in models/diffusion_models (InfiniteTalk single/multi "
                                              "or MultiTalk/multitalk.safetensors)"}),
            "wav2vec": ("STRING", {"default": "chinese-wav2vec2-base",
                                   "tooltip": "The chinese-wav2vec2-base folder in models/checkpoints"}),
            "width": ("INT", {"default": 832, "min": 16, "max": 2048, "step": 16, "tooltip": "Output width"}),
            "height": ("INT", {"default": 480, "min": 16, "max": 2048, "step": 16, "tooltip": "Output height"}),
            "segment_frames": ("INT", {"default": 81, "min": 5, "max": 201, "step": 4,
                                       "tooltip": "Frames per generated segment (4k+1; upstream 81)"}),
            "continuation": (list(TALK_CONTINUATION), {"default": next(iter(TALK_CONTINUATION)), "tooltip":
                             "How a segment continues the previous one: InfiniteTalk keeps the portrait as the "
                             "I2V image and holds the last 9 frames' latents; MultiTalk starts on the last frame"}),
            "fps": ("FLOAT", {"default": 25.0, "min": 1.0, "max": 60.0, "tooltip": "InfiniteTalk is trained at 25"}),
            "steps": ("INT", {"default": 40, "min": 1, "max": 200, "tooltip": "Sampling steps per segment"}),
            "shift": ("FLOAT", {"default": 7.0, "min": 0.1, "max": 20.0, "tooltip": "7 at 480p, 11 at 720p"}),
            "text_cfg": ("FLOAT", {"default": 5.0, "min": 1.0, "max": 20.0, "tooltip": "Prompt guidance"}),
            "audio_cfg": ("FLOAT", {"default": 4.0, "min": 1.0, "max": 20.0,
                                    "tooltip": "Audio guidance (lip sync strength; upstream 3–5)"}),
            "seed": ("INT", {"default": 42, "min": 0, "max": 0xFFFFFFFFFFFFFFFF,
                             "tooltip": "Noise seed (segment k uses seed + k)"}),
        }, "hidden": {"prompt": "PROMPT"}}

    def perform(self, wan, text, portrait, speech, adapter, wav2vec, width, height, segment_frames, fps, steps,
                shift, text_cfg, audio_cfg, seed, continuation=None, prompt=None):
        from ..media.audio import audio_from_input, to_audio_dict
        from ..models.loaders import model_path
        from ..wan import conditioning as WC
        from . import audio_render as R, talking_audio as A
        node = runtime.node_label(VBTalkingHead)
        where = dict(class_type="VBTalkingHead", prompt=prompt)
        if wan.variant != "i2v" or not wan.has("image_encoder"):
            raise NodeInputError(node, "wan", f"needs a Wan2.1 I2V model loaded with its CLIP vision encoder "
                                 f"(got {wan.variant}{'' if wan.has('image_encoder') else ', no CLIP vision'})")
        WC.check_size(node, int(segment_frames), int(height), int(width), wan)
        waveform, rate = audio_from_input(speech, node, "speech")
        if waveform.shape[1] * float(fps) < rate:
            raise NodeInputError(node, "speech", "shorter than one video frame")
        adapter_path = model_path(node, "adapter", adapter, folder="diffusion_models", **where)
        w2v = model_path(node, "wav2vec", wav2vec, folder="checkpoints", **where)
        w2v = w2v if os.path.isdir(w2v) else os.path.dirname(w2v)  # the folder, or a file inside it
        config = wan.module("transformer").config
        try:
            talker = _cached("adapter", adapter_path, lambda: A.load_adapter(adapter_path, config, wan.dtype))
        except A.AudioAdapterError as exc:
            raise NodeInputError(node, "adapter", str(exc)) from None
        try:
            encoder = _cached("wav2vec", w2v, lambda: A.load_wav2vec(w2v))
        except A.AudioAdapterError as exc:
            raise NodeInputError(node, "wav2vec", str(exc)) from None
        anchor, motion = TALK_CONTINUATION.get(continuation or next(iter(TALK_CONTINUATION)), (None, 0))
        if anchor is None:
            raise NodeInputError(node, "continuation", f"one of {list(TALK_CONTINUATION)}")
        if motion >= int(segment_frames):
            raise NodeInputError(node, "segment_frames", f"must be more than the {motion} motion frames")
        settings = R.TalkSettings(segment_frames=int(segment_frames), motion_frames=motion, anchor=anchor,
                                  fps=float(fps), steps=int(steps), shift=float(shift), text_cfg=float(text_cfg),
                                  audio_cfg=float(audio_cfg), seed=int(seed))
        out = R.talking_head(wan, talker, encoder, portrait, waveform, rate, text["prompt_embeds"],
                             text["negative_embeds"], None, settings, int(height), int(width))
        keep = int(round(out["frames"] / float(fps) * rate))
        return out["clip"], to_audio_dict(waveform[:, :keep], rate)


NODE_CLASS_MAPPINGS = {"VBTalkingHead": VBTalkingHead}
NODE_DISPLAY_NAME_MAPPINGS = {"VBTalkingHead": "Talking Head from Audio (InfiniteTalk) (VibeBoard)"}
