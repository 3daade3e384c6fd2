"""Image and video generation on fal.ai end to end: key → uploads → queue → download → IMAGE frames, with
every call in the cost ledger and a provenance file next to every output.

A paid result whose download failed is remembered (request id + result URLs in the ledger): running the
same request again downloads it instead of paying for a new generation.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..common import runtime
from . import catalog, costs, downloads
from .errors import ManagedApiError
from .fal_backend import PROVIDER, FalJob, Progress, endpoints_overridden
from .keys import require_key


@dataclass
class Request:
    node: str
    model_id: str
    arguments: dict                   # everything but uploaded inputs
    key_env: str = "FAL_KEY"
    timeout_s: float = 600.0
    filename_prefix: str = "vibeboard/api"
    image: Optional[object] = None    # IMAGE tensor [B,H,W,3]: the first frame is uploaded
    image_arg: Optional[str] = None
    video: Optional[object] = None    # IMAGE frames [T,H,W,3]: encoded to MP4 and uploaded (video-to-video)
    video_fps: float = 24.0
    video_arg: str = "video_url"
    run_id: str = ""
    fallback_reason: str = ""         # set when the pod → API fallback sent this call


@dataclass
class Generated:
    paths: list
    provenance: dict
    result: dict
    row_id: int = 0
    started: float = 0.0


def run_id_for(prompt) -> str:
    """Group ledger rows by run: VIBEBOARD_RUN_ID when the worker sets one, else the workflow's fingerprint."""
    if os.environ.get("VIBEBOARD_RUN_ID"):
        return os.environ["VIBEBOARD_RUN_ID"]
    if not prompt:
        return ""
    return "wf-" + hashlib.sha256(json.dumps(prompt, sort_keys=True, default=str).encode()).hexdigest()[:12]


def image_png(image) -> bytes:
    """First image of an IMAGE batch as PNG bytes."""
    from PIL import Image
    frame = image[0] if getattr(image, "dim", lambda: 3)() == 4 else image
    array = (frame.detach().cpu().float().clamp(0, 1).numpy() * 255.0 + 0.5).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array[..., :3]).save(buffer, format="PNG")
    return buffer.getvalue()


def video_mp4(node: str, frames, fps: float) -> bytes:
    """IMAGE frames → H.264 MP4 bytes (through a temp file: PyAV muxes to files)."""
    from ..media import video as video_io
    video_io.check_image_batch(frames, node, "input_video")
    path = os.path.join(runtime.temp_directory(), f"vibeboard_upload_{os.getpid()}_{time.monotonic_ns()}.mp4")
    try:
        video_io.write_video(path, frames, fps, crf=17, preset="fast")
        with open(path, "rb") as handle:
            return handle.read()
    finally:
        if os.path.exists(path):
            os.remove(path)


def _args_hash(req: Request, *uploads: Optional[bytes]) -> str:
    digest = hashlib.sha256(json.dumps([req.model_id, req.arguments], sort_keys=True, default=str).encode())
    for data in uploads:
        if data is not None:
            digest.update(hashlib.sha256(data).digest())
    return digest.hexdigest()


def _write_provenance(path: str, provenance: dict) -> None:
    with open(path + ".vibeboard.json", "w") as handle:
        json.dump({**provenance, "file": os.path.basename(path)}, handle, indent=2, default=str)


def _result_files(result: dict, want_video: bool) -> list:
    """[(url, content_type)] of the media in a fal result: {"images": [...]} or {"video": {...}}."""
    items = []
    if want_video:
        video = result.get("video") or (result.get("videos") or [None])[0]
        if isinstance(video, dict) and video.get("url"):
            items.append((video["url"], video.get("content_type", "video/mp4")))
        elif isinstance(video, str):
            items.append((video, "video/mp4"))
    else:
        for image in result.get("images") or ([result["image"]] if result.get("image") else []):
            if isinstance(image, dict) and image.get("url"):
                items.append((image["url"], image.get("content_type", "")))
            elif isinstance(image, str):
                items.append((image, ""))
    return items


def run(req: Request, want_video: bool) -> Generated:
    """Submit (or recover a paid result), download every result file. Raises ManagedApiError.
    The caller decodes the files and closes the ledger row with `record_cost`."""
    key = require_key(req.node, req.key_env, PROVIDER)
    bar = Progress(runtime.progress_bar(100))
    uploads = {"image": image_png(req.image) if req.image is not None else None,
               "input_video": video_mp4(req.node, req.video, req.video_fps) if req.video is not None else None}
    started = time.monotonic()
    job = FalJob(req.node, key, req.key_env, req.model_id, timeout_s=req.timeout_s, progress=bar)
    try:
        row_id, result, recovered = _submit_or_recover(req, job, uploads, "clip" if want_video else "image",
                                                       started)
    finally:
        job.close()
    files = _result_files(result, want_video)
    if not files:
        costs.Ledger().update(row_id, status="failed", result=result, note="result has no media")
        raise ManagedApiError(req.node, "model", f"{PROVIDER} returned no {'video' if want_video else 'image'} "
                              f"for request {job.request_id} (keys: {', '.join(sorted(result)) or 'none'})",
                              kind="queue", provider=PROVIDER, request_id=job.request_id)
    paths = _download_all(req, job, files, row_id, result, started, "mp4" if want_video else "png")
    bar.set(100)
    digest = {name: hashlib.sha256(data).hexdigest() if data else None for name, data in uploads.items()}
    provenance = {"source": "api", "provider": PROVIDER, "model": req.model_id, "request_id": job.request_id,
                  "arguments": req.arguments, "uploaded_image_sha256": digest["image"],
                  "uploaded_video_sha256": digest["input_video"], "run_id": req.run_id,
                  "fallback": bool(req.fallback_reason), "fallback_reason": req.fallback_reason or None,
                  "recovered_download": recovered, "logs": job.progress.logs[-20:], "seed": result.get("seed"),
                  "outputs": paths,
                  "dailies_note": (f"made on {PROVIDER} {req.model_id}" +
                                   (f" (pod fallback: {req.fallback_reason})" if req.fallback_reason else ""))}
    return Generated(paths, provenance, result, row_id, started)


def _submit_or_recover(req: Request, job: FalJob, uploads: dict, kind: str, started: float):
    """→ (ledger row id, result JSON, recovered). A paid result of the same request (model, arguments, uploaded
    bytes) whose download failed earlier is fetched again instead of being bought twice."""
    ledger = costs.Ledger()
    args_hash = _args_hash(req, *uploads.values())
    previous = ledger.unfinished_download(req.model_id, args_hash)
    if previous is not None:
        job.request_id = previous["request_id"]
        result = json.loads(previous["result"]) if previous["result"] else job.fetch_existing(job.request_id)
        return previous["id"], result, True
    arguments = dict(req.arguments)
    for input_name, data in uploads.items():
        if data is not None:
            arg, kind_of, name = ((req.image_arg or "image_url", "image/png", "input.png") if input_name == "image"
                                  else (req.video_arg, "video/mp4", "input.mp4"))
            arguments[arg] = job.upload(data, kind_of, name, input_name)
            job.progress.set(10)
    row_id = ledger.record(provider=PROVIDER, model=req.model_id, kind=kind, status="running", run_id=req.run_id,
                           node=req.node, args_hash=args_hash, fallback=bool(req.fallback_reason),
                           note=req.fallback_reason)
    try:
        result = job.run(arguments, on_request_id=lambda rid: ledger.update(row_id, request_id=rid))
    except ManagedApiError as exc:
        ledger.update(row_id, status="timeout" if exc.kind == "timeout" else "failed", cost_usd=0.0,
                      seconds=time.monotonic() - started, note=str(exc)[:500])
        raise
    except runtime.InterruptProcessing:
        ledger.update(row_id, status="cancelled", seconds=time.monotonic() - started, cost_usd=0.0,
                      note="interrupted; remote cancel " + ("sent" if job.cancel_sent else "not accepted"))
        raise
    return row_id, result, False


def _download_all(req: Request, job: FalJob, files: list, row_id: int, result: dict, started: float,
                  default_ext: str) -> list:
    """Every result file into the output folder; on a failure the ones already saved stay and are named."""
    paths = []
    for index, (url, content_type) in enumerate(files):
        def on_bytes(done, total, i=index):
            job.progress.set(90 + 10 * (i + (done / total if total else 0)) / len(files))
        try:
            paths.append(downloads.download(req.node, url, req.filename_prefix, content_type=content_type,
                                            default_ext=default_ext, timeout_s=max(30.0, req.timeout_s),
                                            allow_http=endpoints_overridden(), on_bytes=on_bytes))
        except (ManagedApiError, runtime.InterruptProcessing) as exc:
            costs.Ledger().update(row_id, status="download_failed", request_id=job.request_id, result=result,
                                  outputs=paths, seconds=time.monotonic() - started)
            if isinstance(exc, runtime.InterruptProcessing):
                raise
            kept = f"; already saved: {', '.join(paths)}" if paths else ""
            raise ManagedApiError(req.node, exc.input_name, f"{str(exc).split(': ', 2)[-1]} (request "
                                  f"{job.request_id} is paid and kept in the cost ledger: run again to fetch it "
                                  f"without paying twice{kept})", kind="download", provider=PROVIDER,
                                  request_id=job.request_id) from None
    return paths


def record_cost(gen: Generated, usage: dict, extra: Optional[dict] = None) -> dict:
    """Price what was produced (sizes, seconds), close the ledger row, write the provenance files."""
    price = costs.price_call(gen.provenance["model"], usage)
    reason = gen.provenance.get("fallback_reason")
    costs.Ledger().update(gen.row_id, status="ok", unit=price.unit, quantity=price.quantity,
                          unit_price=price.unit_price, cost_usd=price.cost, price_checked=price.checked,
                          outputs=gen.paths, result=gen.result, request_id=gen.provenance["request_id"],
                          seconds=round(time.monotonic() - gen.started, 3),
                          note=price.note + (f"; pod fallback: {reason}" if reason else ""))
    gen.provenance.update(extra or {})
    gen.provenance.update(cost_usd=price.cost, price_unit=price.unit, price_quantity=price.quantity,
                          price_checked=price.checked or None, price_note=price.note or None)
    for path in gen.paths:
        _write_provenance(path, gen.provenance)
    return gen.provenance


# --- decoding what was downloaded ------------------------------------------------------------------

def load_images(node: str, paths: list):
    """Downloaded image files → IMAGE [B,H,W,3] float (all resized to the first one's size if they differ)
    and their (width, height) sizes for pricing."""
    import torch
    from PIL import Image
    frames, sizes = [], []
    for path in paths:
        try:
            with Image.open(path) as img:
                img = img.convert("RGB")
                sizes.append(img.size)
                if frames and img.size != (frames[0].shape[1], frames[0].shape[0]):
                    img = img.resize((frames[0].shape[1], frames[0].shape[0]), Image.LANCZOS)
                frames.append(np.asarray(img, dtype=np.float32) / 255.0)
        except OSError as exc:
            raise ManagedApiError(node, "model", f"the downloaded result {path} is not a readable image: {exc} "
                                  "(the file is kept)", kind="download") from None
    return torch.from_numpy(np.stack(frames)), sizes


def load_clip(node: str, path: str):
    """Downloaded video → (IMAGE frames, AUDIO, fps, seconds, has_audio) through PyAV."""
    from ..media import audio as audio_io
    from ..media import video as video_io
    try:
        info = video_io.probe_video(path)
        loaded = video_io.load_video(path)
    except Exception as exc:  # PyAV raises several types for a broken file
        raise ManagedApiError(node, "model", f"the downloaded result {path} is not a readable video: "
                              f"{type(exc).__name__}: {exc} (the file is kept)", kind="download") from None
    audio = audio_io.to_audio_dict(*loaded.audio) if loaded.audio is not None else audio_io.empty_audio()
    seconds = info.duration or (loaded.frames.shape[0] / loaded.fps if loaded.fps else 0.0)
    return loaded.frames, audio, float(loaded.fps), float(seconds), loaded.audio is not None


# --- node-level entry points (shared by the fal nodes and the pod → API fallback) ------------------

def parse_extra(node: str, text: str) -> dict:
    text = (text or "").strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise runtime.NodeInputError(node, "extra_arguments", f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise runtime.NodeInputError(node, "extra_arguments", "must be a JSON object of extra model inputs")
    return value


def pick_model(node: str, model: str, custom_model_id: str) -> str:
    custom = (custom_model_id or "").strip()
    chosen = custom or model
    if not chosen or chosen == "custom":
        raise runtime.NodeInputError(node, "custom_model_id", "model is 'custom': type a fal model id here "
                                     "(e.g. fal-ai/flux/dev)")
    if chosen.startswith(("http:", "https:", "/")) or ".." in chosen.split("/") or " " in chosen:
        raise runtime.NodeInputError(node, "custom_model_id", f"'{chosen}' is not a fal model id "
                                     "(owner/name[/path], e.g. fal-ai/veo3)")
    return chosen


def _endpoint_for(node: str, model_id: str, image, video: bool) -> catalog.Endpoint:
    """The endpoint, checked against the wiring: an image model that needs an image gets one, and an image
    wired to a text-only model is an error rather than silently dropped."""
    ep = catalog.endpoint(model_id, video=video, has_image=image is not None)
    out = "video" if video else "image"
    if ep.mode in ("i2i", "i2v") and image is None:
        raise runtime.NodeInputError(node, "image", f"{model_id} {'animates' if video else 'edits'} an image: "
                                     "connect one")
    if ep.mode in ("t2i", "t2v") and image is not None:
        raise runtime.NodeInputError(node, "image", f"{model_id} is text-to-{out} and would ignore the image: "
                                     f"pick an image-to-{out} model or disconnect `image`")
    return ep


def generate_images(node: str, *, model_id: str, prompt: str, width: int, height: int, seed: int,
                    num_images: int, image=None, strength: float = 0.85, extra: Optional[dict] = None,
                    key_env: str = "FAL_KEY", timeout_s: float = 300.0, filename_prefix: str = "vibeboard/api",
                    run_id: str = "", fallback_reason: str = ""):
    """→ (IMAGE batch, provenance dict, ui entries)."""
    ep = _endpoint_for(node, model_id, image, video=False)
    if ep.prompt_used and not (prompt or "").strip():
        raise runtime.NodeInputError(node, "prompt", "empty prompt")
    args = {"prompt": prompt, "seed": int(seed), "num_images": int(num_images), "output_format": "png"}
    if ep.mode == "t2i":
        args["image_size"] = {"width": int(width), "height": int(height)}
    elif "kontext" not in model_id and "redux" not in model_id:
        args["strength"] = float(strength)
    if not ep.prompt_used:
        args.pop("prompt")
    args.update(extra or {})
    req = Request(node, model_id, args, key_env, timeout_s, filename_prefix,
                  image=image, image_arg=ep.image_arg, run_id=run_id,
                  fallback_reason=fallback_reason)
    gen = run(req, want_video=False)
    images, sizes = load_images(node, gen.paths)
    provenance = record_cost(gen, {"sizes": sizes})
    return images, provenance, _ui(gen.paths)


def generate_clip(node: str, *, model_id: str, prompt: str, duration_s: int, aspect_ratio: str,
                  resolution: str = "default", generate_audio: bool = True, negative_prompt: str = "",
                  seed: int = 0, image=None, extra: Optional[dict] = None, key_env: str = "FAL_KEY",
                  timeout_s: float = 900.0, filename_prefix: str = "vibeboard/api_clip", run_id: str = "",
                  fallback_reason: str = "", input_video=None, input_video_fps: float = 24.0):
    """→ (frames IMAGE, AUDIO, fps, path, provenance dict, ui entries). `input_video` (frames) is encoded and
    uploaded as the model's `video_url`, for video-to-video endpoints."""
    ep = _endpoint_for(node, model_id, image, video=True)
    if not (prompt or "").strip():
        raise runtime.NodeInputError(node, "prompt", "empty prompt")
    args = {"prompt": prompt, "duration": catalog.duration_value(ep, int(duration_s)),
            "aspect_ratio": aspect_ratio}
    if negative_prompt and ep.family in ("kling", "veo"):
        args["negative_prompt"] = negative_prompt
    if resolution and resolution != "default":
        args["resolution"] = resolution
    if ep.family == "veo":
        args["generate_audio"] = bool(generate_audio)
    if seed and ep.family == "veo":
        args["seed"] = int(seed)
    args.update(extra or {})
    req = Request(node, model_id, args, key_env, timeout_s, filename_prefix,
                  image=image, image_arg=ep.image_arg, run_id=run_id,
                  fallback_reason=fallback_reason, video=input_video, video_fps=float(input_video_fps))
    gen = run(req, want_video=True)
    frames, audio, fps, seconds, has_audio = load_clip(node, gen.paths[0])
    provenance = record_cost(gen, {"seconds": seconds, "audio": args.get("generate_audio", has_audio),
                                   "resolution": args.get("resolution", "540p"),
                                   "duration": catalog.duration_value(ep, int(duration_s))},
                             extra={"fps": fps, "seconds": seconds, "frames": int(frames.shape[0])})
    return frames, audio, fps, gen.paths[0], provenance, _ui(gen.paths[:1], video=True)


def _ui(paths: list, video: bool = False) -> dict:
    """The node's `ui`: the media under "images" (shown, and pushed to storage by the runner) and each
    provenance file under "files", so the recipe travels with the output."""
    ui = {"images": [ui_entry(p, video) for p in paths], "files": [ui_entry(p + ".vibeboard.json") for p in paths]}
    if video:
        ui["animated"] = [True]
    return ui


def ui_entry(path: str, video: bool = False) -> dict:
    directory = os.path.abspath(runtime.output_directory())
    folder, name = os.path.split(os.path.abspath(path))
    sub = os.path.relpath(folder, directory)
    entry = {"filename": name, "subfolder": "" if sub == "." else sub, "type": "output"}
    if video:
        entry["format"] = "video/mp4"
    return entry
