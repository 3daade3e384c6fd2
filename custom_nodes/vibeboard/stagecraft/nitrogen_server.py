"""NitroGen inference over an authenticated, pickle-free protocol (upstream's ZeroMQ server unpickles whatever
arrives on a port bound to every interface: remote code execution for anyone who can reach it).

Wire format, per message in both directions (TCP):
    u32 big-endian header length | header (UTF-8 JSON object) | u32 payload length | payload bytes
Request header: {"token": str, "type": "info" | "reset" | "predict", "shape": [H, W, 3]} — `predict` carries
the frame as raw RGB uint8 bytes. Reply header: {"status": "ok", "pred": {...}} or {"status": "error",
"message": str}; no payload. Nothing is ever unpickled; sizes are bounded.
Defaults: bound to 127.0.0.1; clients from other addresses are refused; every request must carry the token
(compared in constant time). `allow_remote=True` is needed to bind or accept beyond loopback.
"""
from __future__ import annotations

import hmac
import ipaddress
import json
import socket
import socketserver
import struct
import threading

import numpy as np

from .nitrogen import validate_prediction

MAX_HEADER = 64 * 1024
MAX_PAYLOAD = 64 * 1024 * 1024


class ProtocolError(ValueError):
    pass


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return host == "localhost"


def _read_exact(sock, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, 1 << 20))
        if not chunk:
            raise ProtocolError("connection closed mid-message")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def send_message(sock, header: dict, payload: bytes = b"") -> None:
    head = json.dumps(header).encode()
    sock.sendall(struct.pack(">I", len(head)) + head + struct.pack(">I", len(payload)) + payload)


def recv_message(sock, max_payload: int = MAX_PAYLOAD) -> tuple:
    (n,) = struct.unpack(">I", _read_exact(sock, 4))
    if n > MAX_HEADER:
        raise ProtocolError(f"header of {n} bytes is over the {MAX_HEADER}-byte limit")
    try:
        header = json.loads(_read_exact(sock, n).decode())
    except (UnicodeDecodeError, ValueError):
        raise ProtocolError("header is not JSON") from None
    if not isinstance(header, dict):
        raise ProtocolError("header must be a JSON object")
    (m,) = struct.unpack(">I", _read_exact(sock, 4))
    if m > max_payload:
        raise ProtocolError(f"payload of {m} bytes is over the {max_payload}-byte limit")
    return header, _read_exact(sock, m)


class _Handler(socketserver.BaseRequestHandler):
    def handle(self):
        server = self.server
        self.request.settimeout(server.io_timeout)
        while True:
            try:
                header, payload = recv_message(self.request)
            except (ProtocolError, OSError, struct.error) as exc:
                if not isinstance(exc, ProtocolError) or "closed" in str(exc):
                    return
                self._error(str(exc))
                return
            if not hmac.compare_digest(str(header.get("token", "")).encode(), server.token.encode()):
                self._error("unauthorized: wrong or missing token")
                return  # drop the connection after a bad token
            try:
                reply = server.dispatch(header, payload)
            except (ProtocolError, ValueError) as exc:
                reply = {"status": "error", "message": str(exc)}
            send_message(self.request, reply)

    def _error(self, message):
        try:
            send_message(self.request, {"status": "error", "message": message})
        except OSError:
            pass


class NitroGenServer(socketserver.ThreadingTCPServer):
    """`policy(frame uint8 [H, W, 3]) -> {"j_left", "j_right", "buttons"}`; optional `policy.reset()` and
    `policy.info()`. Use as a context manager or call `start()` / `close()`."""
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, policy, token: str, host: str = "127.0.0.1", port: int = 0, allow_remote: bool = False,
                 io_timeout: float = 30.0):
        if not token or len(token) < 16:
            raise ValueError("NitroGen server: a token of at least 16 characters is required")
        if not allow_remote and not _is_loopback(host):
            raise ValueError(f"NitroGen server: refusing to bind {host!r}; loopback only unless allow_remote=True")
        self.policy, self.token, self.allow_remote, self.io_timeout = policy, token, allow_remote, io_timeout
        self._lock = threading.Lock()  # one prediction at a time: the model keeps a frame buffer
        super().__init__((host, port), _Handler)
        self._thread = None

    def verify_request(self, request, client_address) -> bool:
        return self.allow_remote or _is_loopback(client_address[0])

    def dispatch(self, header: dict, payload: bytes) -> dict:
        kind = header.get("type")
        with self._lock:
            if kind == "info":
                info = self.policy.info() if hasattr(self.policy, "info") else {}
                return {"status": "ok", "info": info}
            if kind == "reset":
                if hasattr(self.policy, "reset"):
                    self.policy.reset()
                return {"status": "ok"}
            if kind == "predict":
                shape = header.get("shape")
                if (not isinstance(shape, list) or len(shape) != 3 or shape[2] != 3
                        or not all(isinstance(v, int) and v > 0 for v in shape)):
                    raise ProtocolError("predict needs shape [H, W, 3]")
                if len(payload) != shape[0] * shape[1] * 3:
                    raise ProtocolError(f"payload is {len(payload)} bytes; shape {shape} needs "
                                        f"{shape[0] * shape[1] * 3}")
                frame = np.frombuffer(payload, dtype=np.uint8).reshape(shape)
                pred = validate_prediction(self.policy(frame))
                return {"status": "ok", "pred": {k: v.tolist() for k, v in pred.items()}}
        raise ProtocolError(f"unknown request type {kind!r}")

    def start(self) -> "NitroGenServer":
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def close(self):
        self.shutdown()
        self.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()


class NitroGenClient:
    def __init__(self, host: str, port: int, token: str, timeout: float = 30.0):
        self.addr, self.token, self.timeout = (host, int(port)), token, timeout
        self.sock = None

    def _call(self, header: dict, payload: bytes = b"") -> dict:
        if self.sock is None:
            self.sock = socket.create_connection(self.addr, timeout=self.timeout)
        send_message(self.sock, {**header, "token": self.token}, payload)
        try:
            reply, _ = recv_message(self.sock, max_payload=0)
        except (ProtocolError, struct.error) as exc:
            self.close()
            raise ProtocolError(f"NitroGen server: bad reply ({exc})") from None
        if reply.get("status") != "ok":
            self.close()
            raise ProtocolError(f"NitroGen server: {reply.get('message', 'error')}")
        return reply

    def info(self) -> dict:
        return self._call({"type": "info"}).get("info", {})

    def reset(self) -> None:
        self._call({"type": "reset"})

    def predict(self, frame: np.ndarray) -> dict:
        arr = np.ascontiguousarray(np.asarray(frame, dtype=np.uint8))
        if arr.ndim != 3 or arr.shape[2] != 3:
            raise ValueError(f"frame must be [H, W, 3] uint8; got {arr.shape}")
        reply = self._call({"type": "predict", "shape": list(arr.shape)}, arr.tobytes())
        return validate_prediction(reply.get("pred"))

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None
