"""Provider results (URLs or data: URIs) → files in our output folder, written atomically.

A download streams to a hidden `.partial` file next to the reserved name and is renamed only when complete,
so a timeout or a cut connection never leaves a half file that looks like a result; files finished before a
failure stay where they are and are reported.
"""
from __future__ import annotations

import base64
import mimetypes
import os
import urllib.parse
from typing import Callable, Optional

from ..common import runtime
from ..media.files import atomic_output
from .errors import ManagedApiError

CHUNK = 1 << 16
_EXT_BY_TYPE = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "video/mp4": "mp4",
                "video/webm": "webm", "video/quicktime": "mov"}


def extension_for(url: str, content_type: str = "", default: str = "bin") -> str:
    if content_type in _EXT_BY_TYPE:
        return _EXT_BY_TYPE[content_type]
    if url.startswith("data:"):
        kind = url[5:].split(";", 1)[0]
        return _EXT_BY_TYPE.get(kind) or (mimetypes.guess_extension(kind) or "." + default).lstrip(".")
    path = urllib.parse.urlparse(url).path
    ext = os.path.splitext(path)[1].lstrip(".").lower()
    return "jpg" if ext == "jpeg" else (ext if ext and len(ext) <= 5 and ext.isalnum() else default)


def download(node: str, url: str, prefix: str, *, content_type: str = "", default_ext: str = "bin",
             timeout_s: float = 300.0, on_bytes: Optional[Callable[[int, int], None]] = None,
             allow_http: bool = False) -> str:
    """Fetch one result into the output folder as `prefix_00001_.ext`. Returns the absolute path.

    Providers hand out https CDN links; plain http is accepted only when the endpoints were pointed elsewhere
    on purpose (a proxy, the tests' loopback server), so a doctored result cannot make the worker fetch from
    an internal http service into the output folder."""
    directory = runtime.output_directory()
    ext = extension_for(url, content_type, default_ext)
    try:
        path, _, _ = runtime.unique_output_path(directory, prefix, ext)
    except runtime.NodeInputError as exc:
        raise runtime.NodeInputError(node, "filename_prefix", str(exc).split(": ", 2)[-1]) from None
    scheme = urllib.parse.urlparse(url).scheme
    if scheme not in (("http", "https", "data") if allow_http else ("https", "data")):
        with atomic_output(path):  # drop the reserved placeholder
            raise ManagedApiError(node, "model", f"the provider returned a result URL with scheme '{scheme}'; "
                                  "only https (and data:) results are fetched", kind="download")
    with atomic_output(path) as tmp:
        if scheme == "data":
            header, _, payload = url.partition(",")
            data = base64.b64decode(payload) if header.endswith(";base64") else urllib.parse.unquote_to_bytes(payload)
            with open(tmp, "wb") as handle:
                handle.write(data)
        else:
            _stream(node, url, tmp, timeout_s, on_bytes)
    return path


def _stream(node: str, url: str, tmp: str, timeout_s: float, on_bytes) -> None:
    import httpx
    try:
        with httpx.Client(timeout=httpx.Timeout(timeout_s, connect=min(30.0, timeout_s)),
                          follow_redirects=True) as client, client.stream("GET", url) as response:
            if response.status_code >= 400:
                raise ManagedApiError(node, "model", f"downloading the result failed: HTTP {response.status_code} "
                                      f"from {urllib.parse.urlparse(url).netloc}", kind="download",
                                      status=response.status_code)
            total = int(response.headers.get("content-length") or 0)
            done = 0
            with open(tmp, "wb") as handle:
                for chunk in response.iter_bytes(CHUNK):
                    handle.write(chunk)
                    done += len(chunk)
                    if on_bytes is not None:
                        on_bytes(done, total)
            if total and done < total:
                raise ManagedApiError(node, "model", f"the result download stopped at {done} of {total} bytes",
                                      kind="download")
    except httpx.TimeoutException:
        raise ManagedApiError(node, "timeout_s", f"downloading the result timed out after {timeout_s:g} s; "
                              "no partial file was kept", kind="download") from None
    except httpx.TransportError as exc:
        raise ManagedApiError(node, "model", f"downloading the result failed: {type(exc).__name__}: {exc}",
                              kind="download") from None
