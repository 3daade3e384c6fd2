"""The one loopback replay server: a real HTTP server on 127.0.0.1 that answers the real SDKs (openai, anthropic,
fal-client, elevenlabs, …) with recorded replies, so their HTTP, retry and parsing code runs with no network.

`LoopbackServer` owns the socket, the threads, the request log and the wire details (delays, truncated bodies,
clients that hang up); what to answer is `answer(request) -> Reply`. Two ways of answering build on it:
- `ReplayServer` (here): an ordered list of interactions, the first matching one with uses left answers;
  with `record_upstreams` it forwards to the real services instead and records what they said (`Recorder`).
- `vibeboard.llm.cassette.CassetteServer`: LLM replies keyed by a hash of the request's content.
A request nothing answers gets HTTP 599 naming it, so a test can never pass on an unrecorded call.

Interaction fields: method, path (exact, or "re:<regex>"), status, headers, json | text | file (a name in
`files`), times (default 1; -1 = forever), delay_s (sleep before answering), truncate_to (send only this many
body bytes, then drop the connection). "{base}" in any string becomes the server's URL. GET /files/.../<name>
serves files[name] when no interaction claims it.
"""
from __future__ import annotations

import copy
import json
import os
import re
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Optional
from urllib.parse import urlsplit

MISS_STATUS = 599
MEDIA_TYPES = {"png": "image/png", "mp4": "video/mp4", "jpg": "image/jpeg", "wav": "audio/wav"}


@dataclass
class Reply:
    status: int = 200
    headers: dict = field(default_factory=dict)
    body: bytes = b""
    truncate_to: Optional[int] = None  # send only this many body bytes, then drop the connection
    delay_s: float = 0.0


class Headers(dict):
    """A request's headers: names kept lower-case, looked up in any case (as HTTP means them)."""

    def __getitem__(self, name: str):
        return super().__getitem__(name.lower())

    def get(self, name: str, default=None):
        return super().get(name.lower(), default)

    def __contains__(self, name) -> bool:
        return super().__contains__(str(name).lower())


def json_reply(status: int, data, headers: Optional[dict] = None) -> Reply:
    return Reply(status, {"content-type": "application/json", **(headers or {})}, json.dumps(data).encode("utf-8"))


def miss(message: str, **detail) -> Reply:
    """What an unrecorded request gets: 599 (no real service sends it) with a body saying which request."""
    return json_reply(MISS_STATUS, {"detail": message, "error": {"type": "replay_miss", "message": message,
                                                                 **detail}})


class LoopbackServer:
    """A threaded HTTP server on loopback handing each request to `answer(request) -> Reply` (a subclass's method
    or the callable given). `requests` logs every request in arrival order as a dict: method, path, query,
    headers (`Headers`), body (bytes); a long-lived server that is not a test fixture passes
    log_requests=False."""

    def __init__(self, answer: Optional[Callable] = None, host: str = "127.0.0.1", log_requests: bool = True):
        if answer is not None:
            self.answer = answer
        self.requests: list = []
        self.log_requests = log_requests
        self._started = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                length = int(self.headers.get("content-length") or 0)
                split = urlsplit(self.path)
                request = {"method": self.command, "path": split.path, "query": split.query,
                           "headers": Headers((k.lower(), v) for k, v in self.headers.items()),
                           "body": self.rfile.read(length) if length else b""}
                if server.log_requests:
                    server.requests.append(request)
                try:
                    try:
                        reply = server.answer(request)
                    except Exception as exc:  # a bug in a fake: the test reads it instead of a dropped connection
                        reply = json_reply(500, {"detail": f"replay server error: {type(exc).__name__}: {exc}"})
                    server._send(self, reply)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
                    self.close_connection = True

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base = f"http://{host}:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    @property
    def url(self) -> str:
        return self.base

    def answer(self, request: dict) -> Reply:
        return miss(f"no recorded response for {request['method']} {request['path']}")

    def start(self):
        if not self._started:
            self._started = True
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._started:
            self.httpd.shutdown()
        self.httpd.server_close()

    def close(self) -> None:
        self.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def calls(self, method: str = None, path_part: str = "") -> list:
        return [r for r in self.requests if (method is None or r["method"] == method) and path_part in r["path"]]

    @staticmethod
    def _send(handler, reply: Reply) -> None:
        if reply.delay_s:
            time.sleep(reply.delay_s)
        handler.send_response(reply.status)
        for name, value in reply.headers.items():
            if name.lower() != "content-length":
                handler.send_header(name, value)
        handler.send_header("content-length", str(len(reply.body)))
        if reply.truncate_to is not None:
            handler.send_header("connection", "close")
        handler.end_headers()
        if handler.command == "HEAD":  # the headers (with the body's length) only
            return
        handler.wfile.write(reply.body if reply.truncate_to is None else reply.body[:reply.truncate_to])
        handler.wfile.flush()
        if reply.truncate_to is not None:
            handler.close_connection = True


def forward(url: str, method: str, body: bytes, headers: dict, timeout_s: float = 300) -> Reply:
    """Record modes: send the request to the real service and hand back what it answered, errors included."""
    request = urllib.request.Request(url, data=body or None, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return Reply(response.status, dict(response.headers.items()), response.read())
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, dict(exc.headers.items()), exc.read())


def _fill(value, base: str):
    if isinstance(value, str):
        return value.replace("{base}", base)
    if isinstance(value, list):
        return [_fill(v, base) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, base) for k, v in value.items()}
    return value


class ReplayServer(LoopbackServer):
    """Replays `interactions` (see the module doc); with `record_upstreams` ({path prefix: upstream base URL}) it
    forwards every request to the real service instead and records what came back (see `Recorder`)."""

    def __init__(self, interactions: list = (), files: dict = None, record_upstreams: dict = None):
        super().__init__()
        self.interactions = [dict(copy.deepcopy(i), used=0) for i in interactions]
        self.files = dict(files or {})
        self.recorder = Recorder(self, record_upstreams) if record_upstreams else None
        self._lock = threading.Lock()

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

    def answer(self, request: dict) -> Reply:
        if self.recorder is not None:
            return self.recorder.forward(request)
        method, path = request["method"], request["path"]
        item = self._match(method, path)
        name = path.rsplit("/", 1)[-1]
        if item is None and method == "GET" and path.startswith("/files/") and name in self.files:
            kind = MEDIA_TYPES.get(name.rsplit(".", 1)[-1], "application/octet-stream")
            return Reply(200, {"content-type": kind}, self.files[name])
        if item is None:
            return miss(f"no recorded response for {method} {path}")
        headers = {k.lower(): v for k, v in _fill(item.get("headers", {}), self.base).items()}
        if "json" in item:
            body = json.dumps(_fill(item["json"], self.base)).encode()
            headers.setdefault("content-type", "application/json")
        elif "file" in item:
            body = self.files[item["file"]]
        else:
            body = _fill(item.get("text", ""), self.base).encode()
        return Reply(item.get("status", 200), headers, body, item.get("truncate_to"), item.get("delay_s", 0.0))

    def save(self, path: str, about: str) -> None:
        """Write what the recorder captured as a cassette (media files next to it, under <name>.files/)."""
        self.recorder.save(path, about)


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


class Recorder:
    """Record mode, for a developer with real keys: forward each request to its upstream (by path prefix) with
    the caller's auth header, answer with the real reply, and keep it as an interaction. Absolute upstream URLs
    in replies (the queue's status/response URLs, result media on the CDN) are rewritten to the server's own
    base, and the media is fetched through it too, so the recording replays without the network."""

    _FORWARD = ("authorization", "content-type", "accept", "x-fal-file-name")
    _URL = re.compile(r"https?://[A-Za-z0-9.-]+(?::\d+)?")

    def __init__(self, server: ReplayServer, upstreams: dict):
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

    def forward(self, request: dict) -> Reply:
        target = self._upstream(request["path"])
        if target is None:
            return Reply(MISS_STATUS, {}, f"no upstream for {request['path']}".encode())
        url = target + (f"?{request['query']}" if request["query"] else "")
        headers = {k: v for k, v in request["headers"].items() if k in self._FORWARD}
        real = forward(url, request["method"], request["body"], headers, timeout_s=120)
        kind = next((v for k, v in real.headers.items() if k.lower() == "content-type"), "")
        item = {"method": request["method"], "path": request["path"], "status": real.status}
        if "json" in kind:
            text = self._rewrite(real.body.decode("utf-8"))
            item["json"] = json.loads(text)
            out = text.replace("{base}", self.server.base).encode()
        else:
            name = f"f{len(self.server.files)}_" + request["path"].rsplit("/", 1)[-1]
            self.server.files[name] = real.body
            item.update(file=name, headers={"content-type": kind} if kind else {})
            out = real.body
        self.recorded.append(item)
        return Reply(real.status, {"content-type": kind} if kind else {}, out)

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
