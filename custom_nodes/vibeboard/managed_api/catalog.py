"""Which fal.ai endpoints the nodes offer, and how each one names its inputs.

Data, not logic: a new endpoint of a known family works through the node's free `custom_model_id` field
(its family is guessed from the id) plus `extra_arguments` for anything model-specific.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Endpoint:
    model_id: str
    family: str           # flux | kling | luma | veo
    mode: str             # t2i | i2i | t2v | i2v
    image_arg: Optional[str] = None   # where an uploaded input image goes
    duration_style: str = ""          # kling: "5" · luma: "5s" · veo: "8s"
    prompt_used: bool = True


IMAGE_ENDPOINTS = [
    Endpoint("fal-ai/flux-pro/v1.1", "flux", "t2i"),
    Endpoint("fal-ai/flux/dev", "flux", "t2i"),
    Endpoint("fal-ai/flux/schnell", "flux", "t2i"),
    Endpoint("fal-ai/flux-pro/kontext", "flux", "i2i", image_arg="image_url"),
    Endpoint("fal-ai/flux/dev/image-to-image", "flux", "i2i", image_arg="image_url"),
    Endpoint("fal-ai/flux/schnell/redux", "flux", "i2i", image_arg="image_url", prompt_used=False),
]

VIDEO_ENDPOINTS = [
    Endpoint("fal-ai/kling-video/v2.5-turbo/pro/text-to-video", "kling", "t2v", duration_style="n"),
    Endpoint("fal-ai/kling-video/v2.5-turbo/pro/image-to-video", "kling", "i2v", "image_url", "n"),
    Endpoint("fal-ai/kling-video/v2.5-turbo/standard/image-to-video", "kling", "i2v", "image_url", "n"),
    Endpoint("fal-ai/luma-dream-machine/ray-2", "luma", "t2v", duration_style="ns"),
    Endpoint("fal-ai/luma-dream-machine/ray-2/image-to-video", "luma", "i2v", "image_url", "ns"),
    Endpoint("fal-ai/luma-dream-machine/ray-2-flash", "luma", "t2v", duration_style="ns"),
    Endpoint("fal-ai/veo3", "veo", "t2v", duration_style="ns"),
    Endpoint("fal-ai/veo3/image-to-video", "veo", "i2v", "image_url", "ns"),
    Endpoint("fal-ai/veo2", "veo", "t2v", duration_style="ns"),
    Endpoint("fal-ai/veo2/image-to-video", "veo", "i2v", "image_url", "ns"),
]

# Grok vision (xAI, OpenAI-compatible chat completions with image input)
GROK_MODELS = ["grok-4", "grok-2-vision-1212"]
XAI_BASE_URL = "https://api.x.ai/v1"

_BY_ID = {e.model_id: e for e in IMAGE_ENDPOINTS + VIDEO_ENDPOINTS}
DEFAULT_DURATION = {"kling": 5, "luma": 5, "veo": 8}


def image_model_ids():
    return [e.model_id for e in IMAGE_ENDPOINTS]


def video_model_ids():
    return [e.model_id for e in VIDEO_ENDPOINTS]


def endpoint(model_id: str, video: bool, has_image: bool = False) -> Endpoint:
    """The catalogue entry, or a best guess for an id typed into the free field (an id we do not know takes
    the connected image as `image_url` whatever its name says: the user knows the model)."""
    if model_id in _BY_ID:
        return _BY_ID[model_id]
    lowered = model_id.lower()
    family = next((f for f in ("kling", "luma", "veo") if f in lowered), "flux" if not video else "kling")
    takes_image = has_image or any(k in lowered for k in ("image-to", "i2v", "img2", "kontext", "redux", "edit"))
    if video:
        style = "n" if family == "kling" else "ns"
        return Endpoint(model_id, family, "i2v" if takes_image else "t2v", "image_url" if takes_image else None,
                        style)
    return Endpoint(model_id, family, "i2i" if takes_image else "t2i", "image_url" if takes_image else None)


def duration_value(ep: Endpoint, seconds: int):
    """fal's duration enums differ per family: Kling "5", Luma/Veo "5s"/"8s"."""
    return str(seconds) if ep.duration_style == "n" else f"{seconds}s"
