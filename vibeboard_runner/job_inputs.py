"""Job inputs shared by POST /vibeboard/jobs and the RunPod handler: `{"node_id.input": value}` overrides,
where a value `{"url": ...}` or `{"base64": ..., "filename": ...}` is fetched into the input folder first."""
from __future__ import annotations

import base64
import binascii
import os
import re
import urllib.parse
import urllib.request

from . import netpolicy
from .security import ApiError, safe_relpath
from .workflow import literal_or_link

_NAME_OK = re.compile(r"[^A-Za-z0-9._-]")


def _safe_input_name(job_id: str, wanted: str) -> str:
    base = os.path.basename((wanted or "").replace("\\", "/")) or "input.bin"
    base = _NAME_OK.sub("_", base).lstrip(".") or "input.bin"
    return f"vb-{_job_tag(job_id)}-{base[:120]}"


def _job_tag(job_id: str) -> str:
    """First 8 characters of the job id, made file-name safe (job ids are client-chosen: "/../../x")."""
    return _NAME_OK.sub("_", job_id[:8])


def _decode_base64(text: str, limit: int, key: str) -> bytes:
    if text.startswith("data:"):
        text = text.split(",", 1)[-1]
    if len(text) * 3 // 4 > limit:
        raise ApiError(413, "payload_too_large", f"input {key!r}: base64 file exceeds {limit} bytes")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(400, "invalid_input", f"input {key!r}: invalid base64 data ({exc})")


def _download(url: str, limit: int, key: str) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "vibeboard-runner/1"})
    try:
        with netpolicy.open_url(request, 60, f"input {key!r}") as response:
            expected = response.headers.get("Content-Length")
            data = response.read(limit + 1)
    except netpolicy.UrlRefused as exc:
        raise ApiError(403, "url_refused", str(exc))
    except Exception as exc:
        raise ApiError(400, "input_download_failed", f"input {key!r}: could not download {url}: {exc}")
    if expected is not None and expected.isdigit() and len(data) < min(int(expected), limit + 1):
        # http.client hands back a short body when the connection drops: never run on a truncated file
        raise ApiError(400, "input_download_failed",
                       f"input {key!r}: download of {url} was cut off ({len(data)} of {expected} bytes)")
    if len(data) > limit:
        raise ApiError(413, "payload_too_large", f"input {key!r}: {url} is larger than {limit} bytes")
    return data


def output_spec(output, inline_allowed: bool = False) -> dict:
    """The job's `output` object, checked before anything runs: {"prefix": relative path, "upload": bool,
    "include_temp": bool}, plus "base64": bool where the caller can answer with inline files (the RunPod worker,
    worker-comfyui's mode for callers without a bucket); the server's job API stores outputs, so it refuses it."""
    if output is None:
        return {}
    if not isinstance(output, dict):
        raise ApiError(400, "invalid_request", "'output' must be an object {\"prefix\": ..., \"upload\": bool}")
    allowed = ["prefix", "upload", "include_temp"] + (["base64"] if inline_allowed else [])
    unknown = sorted(set(output) - set(allowed))
    if unknown:
        raise ApiError(400, "invalid_request", f"'output' has unknown keys {unknown}; expected {', '.join(allowed)}")
    spec = {}
    flags = [("upload", True), ("include_temp", False)]
    if inline_allowed:  # inline answers turn the upload off unless it is asked for too
        inline = output.get("base64", False)
        flags = [("base64", False), ("upload", not inline), ("include_temp", False)]
    for key, default in flags:
        spec[key] = output.get(key, default)
        if not isinstance(spec[key], bool):
            raise ApiError(400, "invalid_request", f"'output.{key}' must be true or false")
    if output.get("prefix") is not None:
        if not isinstance(output["prefix"], str):
            raise ApiError(400, "invalid_request", "'output.prefix' must be a string")
        spec["prefix"] = safe_relpath(output["prefix"], "output.prefix")
    return spec


def apply_job_inputs(prompt: dict, inputs: dict, input_dir: str, job_id: str, max_bytes: int = 100 << 20,
                     max_url_bytes: int = 200 << 20, allow_urls: bool = True) -> list:
    """Apply {"node_id.input": value} overrides; file values ({"url"} or {"base64"}) land in the input folder
    and the input is set to the new file name. Returns the written file names."""
    if not isinstance(inputs, dict):
        raise ApiError(400, "invalid_request", "'inputs' must be an object {\"node_id.input\": value}")
    written = []
    try:
        for key, value in inputs.items():
            _apply_one(prompt, key, value, input_dir, job_id, max_bytes, max_url_bytes, allow_urls, written)
    except BaseException:
        for name in written:  # the job is refused: nothing will use what was already fetched
            try:
                os.remove(os.path.join(input_dir, name))
            except OSError:
                pass
        raise
    return written


def _write_new_file(input_dir: str, job_id: str, wanted: str, data: bytes) -> str:
    """Exclusive create: another input of this job, or a job whose id starts alike, never gets overwritten."""
    name = _safe_input_name(job_id, wanted)
    stem = name[len("vb-") + len(_job_tag(job_id)) + 1:]
    counter = 1
    while True:
        try:
            with open(os.path.join(input_dir, name), "xb") as handle:
                handle.write(data)
            return name
        except FileExistsError:
            counter += 1
            name = f"vb-{_job_tag(job_id)}-{counter}-{stem}"


def _apply_one(prompt, key, value, input_dir, job_id, max_bytes, max_url_bytes, allow_urls, written):
    node_id, sep, name = str(key).rpartition(".")  # node ids may hold dots, input names do not
    if not sep or not name:
        raise ApiError(400, "invalid_input", f"input key {key!r} must look like 'node_id.input_name'")
    node = prompt.get(node_id)
    if node is None:
        raise ApiError(400, "invalid_input", f"input {key!r}: node {node_id!r} is not in the workflow")
    if isinstance(value, dict) and ("url" in value or "base64" in value):
        if "base64" in value:
            if not isinstance(value["base64"], str):
                raise ApiError(400, "invalid_input", f"input {key!r}: base64 must be a string")
            data = _decode_base64(value["base64"], max_bytes, key)
            wanted = value.get("filename") or f"{node_id}_{name}.bin"
        else:
            url = value["url"]
            scheme = urllib.parse.urlparse(url).scheme if isinstance(url, str) else ""
            if scheme not in ("http", "https"):
                raise ApiError(400, "invalid_input", f"input {key!r}: only http(s) URLs are accepted")
            if not allow_urls:
                raise ApiError(403, "url_inputs_disabled", "URL inputs are disabled on this server")
            data = _download(url, max_url_bytes, key)
            wanted = value.get("filename") or urllib.parse.urlparse(url).path
        if value.get("filename") is not None:
            safe_relpath(value["filename"], f"input {key!r} filename", allow_subdirs=False)
        file_name = _write_new_file(input_dir, job_id, wanted, data)
        written.append(file_name)
        value = file_name
    node.setdefault("inputs", {})[name] = literal_or_link(value)


