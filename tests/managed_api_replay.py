"""A loopback HTTP server that replays recorded provider responses to the real SDKs (fal-client, openai).

A cassette is a list of interactions, answered in order: the first one whose method and path match and that
has uses left answers the request. Fields: method, path (exact, or "re:<regex>"), status, headers, json | text
| file (a name in `files`), times (default 1; -1 = forever), delay_s (sleep before answering), truncate_to
(send only this many body bytes, then drop the connection). "{base}" in any string becomes the server's URL.
GET /files/.../<name> serves files[name] when no interaction claims it. A request nothing matches gets HTTP 599
naming it, so a test can never pass on an unrecorded call.
"""
from __future__ import annotations

import copy
import json
import os
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "managed_api")


def load_cassette(name: str, key: str = "") -> list:
    """A file's `interactions`, or one named entry of its `cassettes`."""
    with open(os.path.join(DATA, name)) as handle:
        data = json.load(handle)
    return data["cassettes"][key] if key else data["interactions"]


def load_recording(path: str):
    """A cassette written by record mode: (interactions, files) ready for ReplayServer."""
    with open(path) as handle:
        interactions = json.load(handle)["interactions"]
    folder, files = path[:-len(".json")] + ".files", {}
    for item in interactions:
        if item.get("file"):
            with open(os.path.join(folder, item["file"]), "rb") as handle:
                files[item["file"]] = handle.read()
    return interactions, files


def _fill(value, base: str):
    if isinstance(value, str):
        return value.replace("{base}", base)
    if isinstance(value, list):
        return [_fill(v, base) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, base) for k, v in value.items()}
    return value


class ReplayServer:
    """Replays `interactions`; with `record_upstreams` ({path prefix: upstream base URL}) it forwards every
    request to the real service instead and records what came back (see `Recorder`)."""

    def __init__(self, interactions: list = (), files: dict = None, record_upstreams: dict = None):
        self.interactions = [dict(copy.deepcopy(i), used=0) for i in interactions]
        self.files = dict(files or {})
        self.recorder = Recorder(self, record_upstreams) if record_upstreams else None
        self.requests: list = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                split = urlsplit(self.path)
                server.requests.append({"method": self.command, "path": split.path, "query": split.query,
                                        "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
                try:
                    if server.recorder is not None:
                        server.recorder.forward(self, split, body)
                    else:
                        server._answer(self, split.path)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def _match(self, method: str, path: str):
        with self._lock:
            for item in self.interactions:
                if item.get("method", "GET") != method:
                    continue
                pattern = item["path"]
                ok = re.fullmatch(pattern[3:], path) if pattern.startswith("re:") else pattern == path
                times = item.get("times", 1)
                if ok and (times < 0 or item["used"] < times):
                    item["used"] += 1
                    return item
        return None

    def _answer(self, handler, path: str) -> None:
        item = self._match(handler.command, path)
        name = path.rsplit("/", 1)[-1]
        if item is None and handler.command == "GET" and path.startswith("/files/") and name in self.files:
            kind = {"png": "image/png", "mp4": "video/mp4", "jpg": "image/jpeg"}.get(name.rsplit(".", 1)[-1], "")
            self._send(handler, 200, {"content-type": kind or "application/octet-stream"}, self.files[name])
            return
        if item is None:
            self._send(handler, 599, {"content-type": "application/json"},
                       json.dumps({"detail": f"no recorded response for {handler.command} {path}"}).encode())
            return
        if item.get("delay_s"):
            time.sleep(item["delay_s"])
        headers = {k.lower(): v for k, v in _fill(item.get("headers", {}), self.base).items()}
        if "json" in item:
            body = json.dumps(_fill(item["json"], self.base)).encode()
            headers.setdefault("content-type", "application/json")
        elif "file" in item:
            body = self.files[item["file"]]
        else:
            body = _fill(item.get("text", ""), self.base).encode()
        self._send(handler, item.get("status", 200), headers, body, item.get("truncate_to"))

    @staticmethod
    def _send(handler, status, headers, body, truncate_to=None):
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("content-length", str(len(body)))
        if truncate_to is not None:
            handler.send_header("connection", "close")
        handler.end_headers()
        handler.wfile.write(body if truncate_to is None else body[:truncate_to])
        handler.wfile.flush()
        if truncate_to is not None:
            handler.close_connection = True

    def save(self, path: str, about: str) -> None:
        """Write what the recorder captured as a cassette (media files next to it, under <name>.files/)."""
        self.recorder.save(path, about)

    def calls(self, method: str = None, path_part: str = "") -> list:
        return [r for r in self.requests if (method is None or r["method"] == method) and path_part in r["path"]]


# --- helpers shared by the managed-API tests (their fixtures api_env / fal_replay are in conftest.py) ---
import io  # noqa: E402

FAL_KEY = "fal-test-key-0123456789"
XAI_KEY = "xai-test-key-9876543210"


def tiny_png(width=64, height=48, seed=0) -> bytes:
    import numpy as np
    from PIL import Image
    rgb = (np.random.RandomState(seed).rand(height, width, 3) * 255).astype("uint8")
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def tiny_mp4(path, frames=8, fps=8, width=32, height=24) -> bytes:
    """An H.264 + AAC clip written by the pack's own encoder (what a provider's MP4 decodes like)."""
    import numpy as np
    import torch
    from vibeboard.media import video
    images = torch.rand(frames, height, width, 3, generator=torch.Generator().manual_seed(0))
    sound = (0.1 * np.sin(np.linspace(0, 440 * 2 * np.pi, 16000))).astype("float32")[None]
    video.write_video(str(path), images, fps, preset="ultrafast", audio=(sound, 16000))
    with open(path, "rb") as handle:
        return handle.read()


def ledger_rows(tmp_path):
    from vibeboard.managed_api import costs
    return [dict(r) for r in costs.Ledger(str(tmp_path / "costs.sqlite")).rows()]


def output_files(tmp_path):
    root = tmp_path / "output"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


class Recorder:
    """Record mode, for a developer with real keys: forward each request to its upstream (by path prefix) with
    the caller's auth header, answer with the real reply, and keep it as an interaction. Absolute upstream URLs
    in replies (the queue's status/response URLs, result media on the CDN) are rewritten to the server's own
    base, and the media is fetched through it too, so the recording replays without the network."""

    _FORWARD = ("authorization", "content-type", "accept", "x-fal-file-name")
    _URL = re.compile(r"https?://[A-Za-z0-9.-]+(?::\d+)?")

    def __init__(self, server: "ReplayServer", upstreams: dict):
        self.server, self.upstreams, self.recorded, self.remote = server, dict(upstreams), [], {}

    def _upstream(self, path: str):
        if path in self.remote:
            return self.remote[path]
        for prefix, base in sorted(self.upstreams.items(), key=lambda kv: -len(kv[0])):
            if path.startswith(prefix):
                return base + path
        return None

    def _rewrite(self, text: str) -> str:
        """Every absolute URL in a reply → {base} + a path that maps back to the original."""
        def local(match):
            host = match.group(0)
            return "{base}" if host in self.upstreams.values() else "{base}/_remote/" + host.split("//", 1)[1]
        rewritten = self._URL.sub(local, text)
        for found in self._URL.finditer(text):
            if found.group(0) not in self.upstreams.values():
                tail = text[found.end():].split('"', 1)[0]
                self.remote["/_remote/" + found.group(0).split("//", 1)[1] + tail] = found.group(0) + tail
        return rewritten

    def forward(self, handler, split, body: bytes) -> None:
        import urllib.error
        import urllib.request
        target = self._upstream(split.path)
        if target is None:
            self.server._send(handler, 599, {}, f"no upstream for {split.path}".encode())
            return
        url = target + (f"?{split.query}" if split.query else "")
        headers = {k: v for k, v in handler.headers.items() if k.lower() in self._FORWARD}
        request = urllib.request.Request(url, data=body or None, method=handler.command, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                status, reply, kind = response.status, response.read(), response.headers.get("content-type", "")
        except urllib.error.HTTPError as exc:
            status, reply, kind = exc.code, exc.read(), exc.headers.get("content-type", "")
        item = {"method": handler.command, "path": split.path, "status": status}
        if "json" in kind:
            text = self._rewrite(reply.decode("utf-8"))
            item["json"] = json.loads(text)
            out = text.replace("{base}", self.server.base).encode()
        else:
            name = f"f{len(self.server.files)}_" + split.path.rsplit("/", 1)[-1]
            self.server.files[name] = reply
            item.update(file=name, headers={"content-type": kind} if kind else {})
            out = reply
        self.recorded.append(item)
        self.server._send(handler, status, {"content-type": kind} if kind else {}, out)

    def save(self, path: str, about: str) -> None:
        last_get = {}
        for item in self.recorded:
            if item["method"] == "GET":
                last_get[item["path"]] = item
        for item in last_get.values():  # a replay may poll more often than the recording did
            item["times"] = -1
        folder = path[:-len(".json")] + ".files"
        if any(i.get("file") for i in self.recorded):
            os.makedirs(folder, exist_ok=True)
        for item in self.recorded:
            if item.get("file"):
                with open(os.path.join(folder, item["file"]), "wb") as handle:
                    handle.write(self.server.files[item["file"]])
        with open(path, "w") as handle:
            json.dump({"about": about, "interactions": self.recorded}, handle, indent=1)
