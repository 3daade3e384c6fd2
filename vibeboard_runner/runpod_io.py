"""RunPod job I/O in worker-comfyui's shape, next to our own (runpod_handler.py).

worker-comfyui (github.com/runpod-workers/worker-comfyui) takes `{"workflow": <API JSON>, "images": [{"name":
"input.png", "image": "<base64 | data URI>"}]}`: each image is written to ComfyUI's input folder under `name`, and the
workflow's LoadImage nodes name it. We accept the same, plus an http(s) URL as `image`, and any file type (video,
audio) under that key. Outputs: storage URLs (S3/R2) by default, or with `"output": {"base64": true}` every output
file inline, as worker-comfyui's `images: [{"filename", "type": "base64", "data"}]` (videos and audio included).
"""
from __future__ import annotations

import base64
import mimetypes
import os

from .job_inputs import _decode_base64, _download
from .security import ApiError, resolve_inside, safe_relpath

MAX_BASE64_OUTPUT_BYTES = 15 << 20  # RunPod caps a job's result at about 20 MB of JSON


def write_named_files(images, input_dir: str, allow_urls: bool, max_bytes: int = 100 << 20,
                      max_url_bytes: int = 200 << 20) -> list:
    """worker-comfyui's `images` list → files in the input folder under their given names. Returns the names."""
    if images is None:
        return []
    if not isinstance(images, list):
        raise ApiError(400, "invalid_input", "input.images must be a list of {\"name\", \"image\"}")
    written = []
    for index, item in enumerate(images):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not isinstance(
                item.get("image"), str):
            raise ApiError(400, "invalid_input", f"input.images[{index}] must be {{\"name\": str, \"image\": str}}")
        name = safe_relpath(item["name"], f"input.images[{index}].name")
        if not name:
            raise ApiError(400, "invalid_input", f"input.images[{index}].name is empty")
        source = item["image"]
        if source.startswith(("http://", "https://")):
            if not allow_urls:
                raise ApiError(403, "url_inputs_disabled", "URL inputs are disabled on this worker")
            data = _download(source, max_url_bytes, name)
        else:
            data = _decode_base64(source, max_bytes, name)
        path = resolve_inside(input_dir, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:  # same name again: the caller's newer file wins, as worker-comfyui
            handle.write(data)
        os.chmod(path, 0o644)
        written.append(name)
    return written


def missing_inputs_error(validation) -> dict:
    """Any invalid node refuses the whole job: ComfyUI would run the other outputs and silently drop the branch
    whose input file the request forgot."""
    lines = []
    for node_id, info in validation.node_errors.items():
        for err in info.get("errors", []):
            detail = err.get("details") or err.get("message", "")
            lines.append(f"node {node_id} ({info.get('class_type')}): {detail}")
    return {"error": "workflow is not valid (every branch must be able to run):\n" + "\n".join(lines),
            "details": validation.response()}


def inline_outputs(files: list) -> list:
    """Output files as worker-comfyui's base64 entries (plus our node/key/content_type)."""
    rows, total = [], 0
    for item in files:
        size = os.path.getsize(item["path"])
        total += size
        if total > MAX_BASE64_OUTPUT_BYTES:
            raise ApiError(413, "output_too_large",
                           f"outputs exceed {MAX_BASE64_OUTPUT_BYTES >> 20} MB inline (at {item['filename']}); "
                           "configure S3/R2 storage and leave output.base64 off to get URLs")
        with open(item["path"], "rb") as handle:
            data = base64.b64encode(handle.read()).decode("ascii")
        rows.append({"filename": item["filename"], "type": "base64", "data": data, "node": item["node"],
                     "key": item["key"], "subfolder": item["subfolder"],
                     "content_type": mimetypes.guess_type(item["filename"])[0] or "application/octet-stream"})
    return rows


def as_worker_comfyui(published: list) -> list:
    """Uploaded outputs in worker-comfyui's `images` shape (`type: s3_url`), for its clients."""
    return [{"filename": row.get("filename"), "type": "s3_url", "data": row.get("url")} for row in published
            if row.get("url")]
