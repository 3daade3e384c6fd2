"""A loopback HTTP server that replays recorded LLM replies to the real `openai` / `anthropic` SDKs.

Point an LLMConfig's base_url at it (`http://127.0.0.1:PORT/v1` for OpenAI-style, `…/anthropic` for
Anthropic-style). Each request is keyed by a hash of its canonical content (route, model, system, messages,
tools, tool_choice — not headers, not the key); the cassette folder holds one JSON file per key.

Modes: `replay` (default; a miss answers HTTP 599 naming the key and the request, so a test fails readably),
`record` (forward to `upstream` with the caller's auth headers and store the reply; a developer with a key),
`passthrough` (forward, store nothing). Cassettes are test data committed with the tests.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MISS_STATUS = 599
_FORWARD_HEADERS = ("authorization", "x-api-key", "anthropic-version", "anthropic-beta", "content-type")


def canonical(path: str, body: dict) -> dict:
    route = "messages" if path.rstrip("/").endswith("/messages") else "chat/completions"
    keep = {k: body.get(k) for k in ("model", "system", "messages", "tools", "tool_choice") if k in body}
    return {"route": route, **keep}


def request_key(path: str, body: dict) -> str:
    text = json.dumps(canonical(path, body), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


class CassetteServer:
    def __init__(self, folder: str, mode: str = "replay", upstream: str = "", host: str = "127.0.0.1"):
        if mode not in ("replay", "record", "passthrough"):
            raise ValueError(f"cassette mode must be replay, record or passthrough, not {mode!r}")
        if mode != "replay" and not upstream:
            raise ValueError(f"cassette mode {mode} needs an upstream base URL")
        self.folder, self.mode, self.upstream = folder, mode, upstream.rstrip("/")
        self.requests: list = []   # (key, canonical request, status) in arrival order
        os.makedirs(folder, exist_ok=True)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    return self._send(400, {"error": {"message": "request body is not JSON"}})
                status, reply = server.handle(self.path, body, {k: v for k, v in self.headers.items()
                                                                if k.lower() in _FORWARD_HEADERS})
                self._send(status, reply)

            def _send(self, status, reply):
                data = json.dumps(reply).encode("utf-8")
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "CassetteServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def path_for(self, key: str) -> str:
        return os.path.join(self.folder, f"{key}.json")

    def handle(self, path: str, body: dict, headers: dict):
        key = request_key(path, body)
        canon = canonical(path, body)
        if self.mode == "replay":
            file = self.path_for(key)
            if not os.path.isfile(file):
                self.requests.append((key, canon, MISS_STATUS))
                return MISS_STATUS, {"error": {"type": "cassette_miss", "message": f"no recorded reply for {key}",
                                               "key": key, "request": canon}}
            with open(file, encoding="utf-8") as handle:
                entry = json.load(handle)
            self.requests.append((key, canon, entry["status"]))
            return entry["status"], entry["response"]
        status, reply = self._forward(path, body, headers)
        self.requests.append((key, canon, status))
        if self.mode == "record":
            self.save(key, canon, status, reply)
        return status, reply

    def save(self, key: str, canon: dict, status: int, reply: dict) -> str:
        file = self.path_for(key)
        with open(file, "w", encoding="utf-8") as handle:
            json.dump({"request": canon, "status": status, "response": reply}, handle, indent=1, ensure_ascii=False)
            handle.write("\n")
        return file

    def _forward(self, path: str, body: dict, headers: dict):
        # the local path's prefix (/v1, /anthropic) is the upstream base URL's job
        suffix = "/v1/messages" if path.rstrip("/").endswith("/messages") else "/chat/completions"
        req = urllib.request.Request(self.upstream + suffix, data=json.dumps(body).encode("utf-8"),
                                     headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=300) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")
