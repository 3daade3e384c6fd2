"""A loopback HTTP server that replays recorded LLM replies to the real `openai` / `anthropic` SDKs (the one replay
server, common/replay_server.py, answering from a folder of replies keyed by request content).

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

from vibeboard.common.replay_server import MISS_STATUS, LoopbackServer, forward, json_reply

_FORWARD_HEADERS = ("authorization", "x-api-key", "anthropic-version", "anthropic-beta", "content-type")


def canonical(path: str, body: dict) -> dict:
    route = "messages" if path.rstrip("/").endswith("/messages") else "chat/completions"
    keep = {k: body.get(k) for k in ("model", "system", "messages", "tools", "tool_choice") if k in body}
    return {"route": route, **keep}


def request_key(path: str, body: dict) -> str:
    text = json.dumps(canonical(path, body), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


class CassetteServer(LoopbackServer):
    """`exchanges` logs (key, canonical request, status) per request; `requests` (LoopbackServer) the raw ones."""

    def __init__(self, folder: str, mode: str = "replay", upstream: str = "", host: str = "127.0.0.1"):
        if mode not in ("replay", "record", "passthrough"):
            raise ValueError(f"cassette mode must be replay, record or passthrough, not {mode!r}")
        if mode != "replay" and not upstream:
            raise ValueError(f"cassette mode {mode} needs an upstream base URL")
        super().__init__(host=host)
        self.folder, self.mode, self.upstream = folder, mode, upstream.rstrip("/")
        self.exchanges: list = []   # (key, canonical request, status) in arrival order
        os.makedirs(folder, exist_ok=True)

    def answer(self, request: dict):
        try:
            body = json.loads(request["body"] or b"{}")
        except ValueError:
            return json_reply(400, {"error": {"message": "request body is not JSON"}})
        headers = {k: v for k, v in request["headers"].items() if k in _FORWARD_HEADERS}
        status, reply = self.handle(request["path"], body, headers)
        return json_reply(status, reply)

    def path_for(self, key: str) -> str:
        return os.path.join(self.folder, f"{key}.json")

    def handle(self, path: str, body: dict, headers: dict):
        key = request_key(path, body)
        canon = canonical(path, body)
        if self.mode == "replay":
            file = self.path_for(key)
            if not os.path.isfile(file):
                self.exchanges.append((key, canon, MISS_STATUS))
                return MISS_STATUS, {"error": {"type": "cassette_miss", "message": f"no recorded reply for {key}",
                                               "key": key, "request": canon}}
            with open(file, encoding="utf-8") as handle:
                entry = json.load(handle)
            self.exchanges.append((key, canon, entry["status"]))
            return entry["status"], entry["response"]
        status, reply = self._forward(path, body, headers)
        self.exchanges.append((key, canon, status))
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
        real = forward(self.upstream + suffix, "POST", json.dumps(body).encode("utf-8"), headers)
        return real.status, json.loads(real.body or b"{}")
