"""Managed-API nodes (thin): fal.ai image and video generation, Grok vision tagging, pod → API fallback.

Keys never enter the graph: each node names the environment variable that holds its key. Every call is
priced into the cost ledger (`vibeboard cost`), and every output gets a `<file>.vibeboard.json` provenance
file saying which provider/model made it and whether the fallback sent it there.
"""
from __future__ import annotations

import json
import os

from ..common import runtime
from ..common.runtime import NodeInputError
from . import catalog, fallback, generate, sidecar
from .errors import MissingExtraError
from .keys import require_key

CATEGORY = "VibeBoard/Managed API"
CUSTOM = "custom"
ASPECTS = ["16:9", "9:16", "1:1", "4:3", "3:4", "21:9"]
RESOLUTIONS = ["default", "540p", "720p", "1080p"]

def _key_env(default: str):
    return ("STRING", {"default": default, "tooltip": "NAME of the environment variable holding the key (the key "
                                                      "itself never goes into a workflow)"})


def _image_size(tooltip: str) -> dict:
    return {name: ("INT", {"default": default, "min": 64, "max": 2048, "step": 16, "tooltip": tooltip})
            for name, default in (("width", 1024), ("height", 576))}


def _seed(tooltip: str):
    return ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFF, "tooltip": tooltip})


def _common_fal(timeout: int, prefix: str) -> dict:
    return {
        "api_key_env": _key_env("FAL_KEY"),
        "timeout_s": ("INT", {"default": timeout, "min": 5, "max": 7200,
                              "tooltip": "give up (and cancel the remote request) after this many seconds"}),
        "filename_prefix": ("STRING", {"default": prefix, "tooltip": "downloaded results go to the output "
                                       "folder under this prefix (a counter is appended)"}),
    }


_OPTIONAL_FAL = {
    "custom_model_id": ("STRING", {"default": "", "tooltip": "any fal model id (e.g. a newer version); "
                                   "overrides `model` when not empty"}),
    "extra_arguments": ("STRING", {"default": "", "multiline": True,
                                   "tooltip": "JSON object of extra model inputs, sent as-is"}),
}


def _run_id(workflow) -> str:
    return generate.run_id_for(workflow)


class VBFalImage:
    DESCRIPTION = ("Generate images with FLUX Pro/Dev/Schnell on fal.ai (queue API): text-to-image, or image-to-"
                   "image when an image is connected and the model edits images. Results are downloaded into the "
                   "output folder, priced into the cost ledger, and returned as IMAGE. Needs a fal key in the "
                   "environment variable named by api_key_env.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "STRING", "FLOAT")
    RETURN_NAMES = ("images", "provenance", "cost_usd")
    OUTPUT_TOOLTIPS = ("downloaded results, float 0..1", "JSON: provider, model, request id, arguments, cost",
                       "what the call cost by the price table (0 when the model has no price)")
    OUTPUT_NODE = True
    FUNCTION = "generate"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (catalog.image_model_ids() + [CUSTOM], {"default": "fal-ai/flux/schnell",
                          "tooltip": "t2i endpoints, then image editors (kontext, dev image-to-image, redux)"}),
                "prompt": ("STRING", {"default": "", "multiline": True, "tooltip": "what to make or change"}),
                **_image_size("text-to-image size (editors keep the input's size)"),
                "seed": _seed("same seed + prompt = same image (on the same model version)"),
                "num_images": ("INT", {"default": 1, "min": 1, "max": 4,
                                       "tooltip": "images per call (each is billed)"}),
                **_common_fal(300, "vibeboard/api_image"),
            },
            "optional": {
                "image": ("IMAGE", {"tooltip": "input for image-to-image models (the first image is uploaded)"}),
                "strength": ("FLOAT", {"default": 0.85, "min": 0.0, "max": 1.0, "step": 0.01,
                                       "tooltip": "image-to-image: how far to move from the input"}),
                **_OPTIONAL_FAL,
            },
            "hidden": {"workflow": "PROMPT"},
        }

    def generate(self, model, prompt, width, height, seed, num_images, api_key_env="FAL_KEY", timeout_s=300,
                 filename_prefix="vibeboard/api_image", image=None, strength=0.85, custom_model_id="",
                 extra_arguments="", workflow=None):
        node = runtime.node_label(VBFalImage)
        model_id = generate.pick_model(node, model, custom_model_id)
        extra = generate.parse_extra(node, extra_arguments)
        require_key(node, api_key_env, "fal.ai")
        images, provenance, ui = generate.generate_images(
            node, model_id=model_id, prompt=prompt, width=width, height=height, seed=seed, num_images=num_images,
            image=image, strength=strength, extra=extra, key_env=api_key_env, timeout_s=timeout_s,
            filename_prefix=filename_prefix, run_id=_run_id(workflow))
        return {"ui": ui,
                "result": (images, json.dumps(provenance, default=str), float(provenance.get("cost_usd") or 0.0))}


class VBFalVideo:
    DESCRIPTION = ("Generate a clip with Kling, Luma (Ray 2) or Veo on fal.ai (queue API): text-to-video, or "
                   "image-to-video from a connected start frame. The MP4 is downloaded into the output folder and "
                   "decoded into IMAGE frames + AUDIO; the call is priced into the cost ledger. Needs a fal key in "
                   "the environment variable named by api_key_env.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "AUDIO", "FLOAT", "STRING", "STRING", "FLOAT")
    RETURN_NAMES = ("frames", "audio", "fps", "path", "provenance", "cost_usd")
    OUTPUT_TOOLTIPS = ("decoded frames [T,H,W,3]", "the clip's sound (silent when none)", "frame rate",
                       "absolute path of the downloaded MP4", "JSON: provider, model, request id, cost",
                       "what the call cost by the price table")
    OUTPUT_NODE = True
    FUNCTION = "generate"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (catalog.video_model_ids() + [CUSTOM],
                          {"default": "fal-ai/kling-video/v2.5-turbo/pro/image-to-video",
                           "tooltip": "text-to-video and image-to-video endpoints; 'custom' uses custom_model_id"}),
                "prompt": ("STRING", {"default": "", "multiline": True, "tooltip": "the shot: action, camera, look"}),
                "duration_s": ("INT", {"default": 5, "min": 1, "max": 20,
                                       "tooltip": "Kling 5/10, Luma 5/9, Veo 3 8 (sent in each model's format)"}),
                "aspect_ratio": (ASPECTS, {"default": "16:9", "tooltip": "not every model takes every ratio"}),
                "resolution": (RESOLUTIONS, {"default": "default", "tooltip": "Luma/Veo; 'default' sends none"}),
                "generate_audio": ("BOOLEAN", {"default": True, "tooltip": "Veo 3 only (cheaper without)"}),
                "negative_prompt": ("STRING", {"default": "", "multiline": True,
                                               "tooltip": "Kling/Veo: what to avoid (others ignore it)"}),
                "seed": _seed("Veo only; 0 = random"),
                **_common_fal(900, "vibeboard/api_clip"),
            },
            "optional": {
                "image": ("IMAGE", {"tooltip": "start frame for image-to-video models (the first image)"}),
                "input_video": ("IMAGE", {"tooltip": "frames uploaded as an MP4 in `video_url` (video-to-video "
                                          "models, via custom_model_id)"}),
                "input_video_fps": ("FLOAT", {"default": 24.0, "min": 1.0, "max": 120.0, "step": 0.001,
                                              "tooltip": "frame rate of input_video"}),
                **_OPTIONAL_FAL,
            },
            "hidden": {"workflow": "PROMPT"},
        }

    def generate(self, model, prompt, duration_s, aspect_ratio, resolution, generate_audio, negative_prompt, seed,
                 api_key_env="FAL_KEY", timeout_s=900, filename_prefix="vibeboard/api_clip", image=None,
                 input_video=None, input_video_fps=24.0, custom_model_id="", extra_arguments="", workflow=None):
        node = runtime.node_label(VBFalVideo)
        model_id = generate.pick_model(node, model, custom_model_id)
        extra = generate.parse_extra(node, extra_arguments)
        require_key(node, api_key_env, "fal.ai")
        frames, audio, fps, path, provenance, ui = generate.generate_clip(
            node, model_id=model_id, prompt=prompt, duration_s=duration_s, aspect_ratio=aspect_ratio,
            resolution=resolution, generate_audio=generate_audio, negative_prompt=negative_prompt, seed=seed,
            image=image, extra=extra, key_env=api_key_env, timeout_s=timeout_s, filename_prefix=filename_prefix,
            run_id=_run_id(workflow), input_video=input_video, input_video_fps=input_video_fps)
        return {"ui": ui,
                "result": (frames, audio, fps, path, json.dumps(provenance, default=str),
                           float(provenance.get("cost_usd") or 0.0))}


class VBGrokVision:
    DESCRIPTION = ("Describe and tag images or a clip's frames with Grok vision (xAI, OpenAI-compatible API). The "
                   "result is written to the analysis sidecars (JSON per asset + SQLite; the asset database plugs "
                   "in as another sink) and priced into the cost ledger. Needs an xAI key in the environment "
                   "variable named by api_key_env.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("STRING", "STRING", "STRING")
    RETURN_NAMES = ("description", "tags", "record")
    OUTPUT_TOOLTIPS = ("what is visible", "comma-separated tags", "JSON record as stored")
    OUTPUT_NODE = True
    FUNCTION = "analyse"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "stills, or a clip's frames (evenly sampled)"}),
                "asset_id": ("STRING", {"default": "shot", "tooltip": "what the notes belong to (shot/version "
                                        "name or output file name)"}),
                "model": (catalog.GROK_MODELS, {"default": catalog.GROK_MODELS[0],
                                               "tooltip": "a Grok model that accepts images"}),
                "max_frames": ("INT", {"default": 4, "min": 1, "max": 16, "tooltip": "frames sent per call"}),
                "instructions": ("STRING", {"default": "", "multiline": True,
                                            "tooltip": "extra guidance (what to look for)"}),
                "api_key_env": _key_env("XAI_API_KEY"),
                "base_url": ("STRING", {"default": catalog.XAI_BASE_URL,
                                        "tooltip": "OpenAI-compatible endpoint"}),
                "timeout_s": ("INT", {"default": 120, "min": 5, "max": 1800,
                                      "tooltip": "per request (the SDK retries rate limits and 5xx twice)"}),
                "sinks": ("STRING", {"default": "json,sqlite", "tooltip": "where to store the analysis: json, "
                                     "sqlite, dailies (a note on the Dailies version named by asset_id)"}),
            },
            "optional": {
                "dailies_project": ("STRING", {"default": "", "tooltip": "Dailies project of the version (for "
                                               "the dailies sink)"}),
            },
            "hidden": {"workflow": "PROMPT"},
        }

    def analyse(self, images, asset_id, model, max_frames, instructions, api_key_env="XAI_API_KEY",
                base_url="", timeout_s=120, sinks="json,sqlite", dailies_project="", workflow=None):
        from . import costs
        node = runtime.node_label(VBGrokVision)
        try:
            from . import grok_vision  # pydantic comes with the `api` extra (openai depends on it)
        except ImportError as exc:
            raise MissingExtraError(node, exc.name or "pydantic") from None
        if images is None or getattr(images, "dim", lambda: 0)() != 4 or images.shape[0] == 0:
            raise NodeInputError(node, "images", "expects an IMAGE batch [B,H,W,3] with at least one image")
        if not (asset_id or "").strip():
            raise NodeInputError(node, "asset_id", "name the asset the notes belong to")
        key = require_key(node, api_key_env, "xAI")
        ledger = costs.Ledger()
        try:
            out = grok_vision.analyse_frames(node, images, key=key, key_env=api_key_env, model=model,
                                             base_url=base_url, timeout_s=float(timeout_s), max_frames=max_frames,
                                             instructions=instructions)
        except Exception as exc:
            ledger.record(provider=grok_vision.PROVIDER, model=model, kind="analysis", status="failed",
                          run_id=_run_id(workflow), node=node, note=str(exc)[:500])
            raise
        price = costs.price_call(model, {k: out["usage"].get(k, 0) for k in ("input_tokens", "output_tokens")})
        ledger.record(provider=grok_vision.PROVIDER, model=model, kind="analysis", status="ok", price=price,
                      run_id=_run_id(workflow), node=node, seconds=out["seconds"],
                      note=f"{out['attempts']} call(s)")
        analysis = out["analysis"]
        record = {"asset_id": asset_id.strip(), "provider": grok_vision.PROVIDER, "model": model,
                  **analysis.model_dump(), "frames": out["frames"], "usage": out["usage"], "cost_usd": price.cost}
        if (dailies_project or "").strip():
            record["dailies_project"] = dailies_project.strip()
        try:
            record["stored"] = sidecar.write_all(record, sinks)
        except KeyError as exc:
            raise NodeInputError(node, "sinks", str(exc)) from None
        except ValueError as exc:  # the dailies sink: no such project / version
            raise NodeInputError(node, "asset_id", f"cannot add the analysis to Dailies: {exc}") from None
        text = json.dumps(record, default=str)
        ui = {"text": [analysis.description]}
        json_file = record["stored"].get("json")
        output = os.path.realpath(runtime.output_directory())
        if json_file and os.path.commonpath([os.path.realpath(json_file), output]) == output:
            ui["files"] = [generate.ui_entry(json_file)]  # the runner pushes it with the outputs
        return {"ui": ui,
                "result": (analysis.description, ", ".join(analysis.tags), text)}


class VBApiFallback:
    DESCRIPTION = ("Run a generation on this pod when it can take it, else on a named fal.ai model: no GPU, too "
                   "little free VRAM, the pod's queue over max_queue, mode=api, or VIBEBOARD_FORCE_API=1 (the "
                   "remedy after an OOM). The local branch is evaluated only when the pod is used. The output's "
                   "provenance says which one made it and why.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "FLOAT", "STRING")
    RETURN_NAMES = ("images", "fps", "provenance")
    OUTPUT_TOOLTIPS = ("the frames from the pod or the API", "frame rate (local_fps for the pod branch)",
                       "JSON: source pod|api, reason, and the API call's provenance")
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "local": ("IMAGE", {"lazy": True, "tooltip": "the pod's own generation (evaluated only when used)"}),
                "mode": (fallback.MODES, {"default": "auto", "tooltip": "auto: decide from GPU/VRAM/queue; "
                                          "pod: never the API; api: always the API"}),
                "api_model": (catalog.image_model_ids() + catalog.video_model_ids(),
                              {"default": "fal-ai/kling-video/v2.5-turbo/pro/text-to-video",
                               "tooltip": "the fal model that takes over when the pod cannot"}),
                "prompt": ("STRING", {"default": "", "multiline": True, "tooltip": "sent to the API model"}),
                **_image_size("image models"),
                "duration_s": ("INT", {"default": 5, "min": 1, "max": 20, "tooltip": "video models"}),
                "seed": _seed("sent to the API model"),
                "local_fps": ("FLOAT", {"default": 16.0, "min": 0.01, "max": 240.0, "tooltip": "fps of `local`"}),
                "max_queue": ("INT", {"default": 0, "min": 0, "max": 10000,
                                      "tooltip": "auto: use the API when more jobs wait on this pod (0 = ignore)"}),
                "min_free_vram_gb": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1024.0, "step": 0.5,
                                               "tooltip": "auto: use the API below this much free VRAM (0 = ignore)"}),
                **_common_fal(900, "vibeboard/fallback"),
            },
            "optional": {"image": ("IMAGE", {"tooltip": "start frame / input image for i2v and i2i API models"})},
            "hidden": {"workflow": "PROMPT"},
        }

    @classmethod
    def IS_CHANGED(cls, mode="auto", max_queue=0, min_free_vram_gb=0.0, **_):
        # a cached result must not hide a change of where the work should run
        return str(fallback.decide(mode, max_queue=max_queue, min_free_vram_gb=min_free_vram_gb).use_api)

    def check_lazy_status(self, mode="auto", max_queue=0, min_free_vram_gb=0.0, local=None, **_):
        decision = fallback.decide(mode, max_queue=max_queue, min_free_vram_gb=min_free_vram_gb)
        self._decision = decision
        return [] if decision.use_api or local is not None else ["local"]

    def run(self, mode, api_model, prompt, width, height, duration_s, seed, local_fps, max_queue, min_free_vram_gb,
            api_key_env="FAL_KEY", timeout_s=900, filename_prefix="vibeboard/fallback", local=None, image=None,
            workflow=None):
        node = runtime.node_label(VBApiFallback)
        decision = getattr(self, "_decision", None) or fallback.decide(
            mode, max_queue=max_queue, min_free_vram_gb=min_free_vram_gb)
        self._decision = None
        if local is not None and not decision.use_api:
            return (local, float(local_fps), json.dumps({"source": "pod", "reason": decision.reason}))
        if not decision.use_api:  # the host did not evaluate the lazy input (no lazy support): say so
            raise NodeInputError(node, "local", "the pod branch produced nothing; connect `local`")
        video = api_model in catalog.video_model_ids()
        if video:
            frames, _audio, fps, _path, provenance, _ui = generate.generate_clip(
                node, model_id=api_model, prompt=prompt, duration_s=duration_s, aspect_ratio="16:9", seed=seed,
                image=image, key_env=api_key_env, timeout_s=timeout_s, filename_prefix=filename_prefix,
                run_id=_run_id(workflow), fallback_reason=decision.reason)
        else:
            frames, provenance, _ui = generate.generate_images(
                node, model_id=api_model, prompt=prompt, width=width, height=height, seed=seed, num_images=1,
                image=image, key_env=api_key_env, timeout_s=timeout_s, filename_prefix=filename_prefix,
                run_id=_run_id(workflow), fallback_reason=decision.reason)
            fps = float(local_fps)
        runtime.check_interrupt()
        return (frames, float(fps), json.dumps({"source": "api", "reason": decision.reason, **provenance},
                                               default=str))


NODE_CLASS_MAPPINGS = {
    "VBFalImage": VBFalImage,
    "VBFalVideo": VBFalVideo,
    "VBGrokVision": VBGrokVision,
    "VBApiFallback": VBApiFallback,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "VBFalImage": "fal.ai Image (FLUX)",
    "VBFalVideo": "fal.ai Video (Kling/Luma/Veo)",
    "VBGrokVision": "Grok Vision Tags",
    "VBApiFallback": "Pod or API (fallback)",
}
