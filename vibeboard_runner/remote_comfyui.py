"""Remote backend: run a workflow on a real ComfyUI server (or another `vibeboard serve`) over its HTTP/WS API.

Submit with POST /prompt, follow the run on /ws (websocket-client; reconnect with backoff; when the socket
cannot be opened at all, poll /history), then collect EVERY file the history references — images, gifs
(VHS), videos, audio, 3D/JSON files — download each through /view, and optionally push them to storage.
"""
from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

EventCallback = Callable[[str, dict], None]


class RemoteError(RuntimeError):
    def __init__(self, message: str, status: int = 0, body=None):
        super().__init__(message)
        self.status = status
        self.body = body


@dataclass
class RemoteResult:
    """Same attributes the CLI's report() reads from the embedded ExecutionResult."""
    prompt_id: str
    prompt: dict
    status: str = "pending"
    outputs: Dict[str, dict] = field(default_factory=dict)
    error: Optional[dict] = None
    history: dict = field(default_factory=dict)
    files: List[dict] = field(default_factory=list)
    skipped: List[dict] = field(default_factory=list)  # ui entries outside the output folder: not downloaded
    executed: List[str] = field(default_factory=list)
    cached: List[str] = field(default_factory=list)
    timings: Dict[str, float] = field(default_factory=dict)
    total_seconds: float = 0.0
    validation_summary: str = ""
    events: List[list] = field(default_factory=list)
    reconnects: int = 0
    polled: bool = False
    published: List[dict] = field(default_factory=list)

    def output_files(self) -> List[dict]:
        return list(self.files)

    def history_entry(self, number: int = 0) -> dict:
        return self.history


class _RemoteClass:
    """Stand-in node class built from /object_info, so UI-format workflows convert against the remote's nodes."""

    def __init__(self, info: dict):
        self._info = info

    def INPUT_TYPES(self):
        return self._info.get("input", {})


class RemoteRegistry:
    def __init__(self, object_info: dict):
        self.info = object_info

    def get(self, name):
        return _RemoteClass(self.info[name]) if name in self.info else None

    def __contains__(self, name):
        return name in self.info

    def display_name(self, name):
        return self.info.get(name, {}).get("display_name", name)


class RemoteComfyUI:
    def __init__(self, url: str, token: Optional[str] = None, client_id: Optional[str] = None,
                 timeout_s: float = 30.0, reconnect_attempts: int = 5, backoff_s: float = 0.5,
                 poll_interval_s: float = 1.0, ws_path: str = "/ws"):
        self.url = url.rstrip("/")
        self.token = token
        self.client_id = client_id or uuid.uuid4().hex
        self.timeout_s = timeout_s
        self.reconnect_attempts = reconnect_attempts
        self.backoff_s = backoff_s
        self.poll_interval_s = poll_interval_s
        self.ws_path = ws_path

    # --- HTTP ------------------------------------------------------------------------------------
    def _headers(self, extra=None) -> dict:
        headers = dict(extra or {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def request(self, method: str, path: str, body=None, raw: Optional[bytes] = None, headers=None,
                parse: bool = True):
        data = raw
        headers = self._headers(headers)
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            payload = exc.read()
            try:
                parsed = json.loads(payload)
            except ValueError:
                parsed = payload.decode("utf-8", "replace")
            raise RemoteError(f"{method} {path} → HTTP {exc.code}: {_error_text(parsed)}", exc.code, parsed)
        if not parse:
            return payload
        return json.loads(payload) if payload else None

    def object_info(self) -> dict:
        return self.request("GET", "/object_info")

    def submit(self, prompt: dict, extra_data: Optional[dict] = None, prompt_id: Optional[str] = None) -> str:
        body = {"prompt": prompt, "client_id": self.client_id, "extra_data": extra_data or {}}
        if prompt_id:
            body["prompt_id"] = prompt_id
        return self.request("POST", "/prompt", body)["prompt_id"]

    def history(self, prompt_id: str) -> Optional[dict]:
        data = self.request("GET", f"/history/{urllib.parse.quote(prompt_id)}") or {}
        return data.get(prompt_id)

    def interrupt(self, prompt_id: Optional[str] = None) -> None:
        self.request("POST", "/interrupt", {"prompt_id": prompt_id} if prompt_id else {}, parse=False)

    def upload_file(self, path: str, subfolder: str = "", kind: str = "input", overwrite: bool = False) -> dict:
        boundary = uuid.uuid4().hex
        with open(path, "rb") as handle:
            content = handle.read()
        parts = []
        for name, value in (("type", kind), ("subfolder", subfolder), ("overwrite", str(overwrite).lower())):
            parts.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n".encode())
        parts.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\""
                     f"{os.path.basename(path)}\"\r\nContent-Type: application/octet-stream\r\n\r\n".encode()
                     + content + b"\r\n")
        parts.append(f"--{boundary}--\r\n".encode())
        return self.request("POST", "/upload/image", raw=b"".join(parts),
                            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})

    def download(self, item: dict, dest_dir: str) -> str:
        """GET /view for one {filename, subfolder, type} entry; saved under dest_dir/subfolder/filename."""
        query = urllib.parse.urlencode({"filename": item["filename"], "subfolder": item.get("subfolder") or "",
                                        "type": item.get("type") or "output"})
        root = os.path.realpath(dest_dir)
        target = os.path.realpath(os.path.join(root, item.get("subfolder") or "", item["filename"]))
        if not _stays_inside(dest_dir, item):  # the remote is not trusted with our file system
            raise RemoteError(f"remote output name {item['filename']!r} leaves the output folder")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        headers = self._headers()
        req = urllib.request.Request(f"{self.url}/view?{query}", headers=headers)
        tmp = target + ".part"
        try:
            with urllib.request.urlopen(req, timeout=max(self.timeout_s, 120)) as response, open(tmp, "wb") as out:
                expected = response.headers.get("Content-Length")
                received = 0
                while True:
                    chunk = response.read(1 << 20)
                    if not chunk:
                        break
                    out.write(chunk)
                    received += len(chunk)
            # http.client returns a short body without complaint when the connection drops
            if expected is not None and expected.isdigit() and received != int(expected):
                raise RemoteError(f"download of {item['filename']!r} was cut off: got {received} of "
                                  f"{expected} bytes")
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
        return target

    # --- websocket -------------------------------------------------------------------------------
    def _ws_url(self) -> str:
        parsed = urllib.parse.urlparse(self.url)
        scheme = "wss" if parsed.scheme == "https" else "ws"
        query = {"clientId": self.client_id}
        if self.token:
            query["token"] = self.token
        return f"{scheme}://{parsed.netloc}{parsed.path}{self.ws_path}?{urllib.parse.urlencode(query)}"

    def connect(self):
        import websocket
        headers = [f"Authorization: Bearer {self.token}"] if self.token else None
        return websocket.create_connection(self._ws_url(), timeout=self.timeout_s, header=headers)

    def _reconnect(self, result: RemoteResult):
        delay = self.backoff_s
        for _ in range(self.reconnect_attempts):
            time.sleep(delay)
            try:
                ws = self.connect()
                result.reconnects += 1
                return ws
            except Exception:
                delay = min(delay * 2, 30.0)
        return None

    def follow(self, prompt_id: str, result: RemoteResult, ws=None, on_event: Optional[EventCallback] = None,
               timeout_s: Optional[float] = None) -> dict:
        """Until the prompt is finished; returns its history entry. Sockets it opened itself (reconnects)
        are closed before it returns; the one passed in stays the caller's to close."""
        state = {"own": None}
        try:
            return self._follow(prompt_id, result, ws, on_event, timeout_s, state)
        finally:
            if state["own"] is not None:
                try:
                    state["own"].close()
                except Exception:
                    pass

    def _follow(self, prompt_id, result, ws, on_event, timeout_s, state) -> dict:
        import websocket
        deadline = None if timeout_s is None else time.time() + timeout_s
        last_check = time.time()
        while True:
            if deadline is not None and time.time() > deadline:
                raise RemoteError(f"prompt {prompt_id} did not finish within {timeout_s} s")
            if ws is None:  # polling mode
                result.polled = True
                entry = self.history(prompt_id)
                if entry is not None and _finished(entry):
                    return entry
                time.sleep(self.poll_interval_s)
                continue
            try:
                ws.settimeout(self.poll_interval_s * 5)
                raw = ws.recv()
            except websocket.WebSocketTimeoutException:
                raw = None
            except (websocket.WebSocketException, OSError):
                try:
                    ws.close()
                except Exception:
                    pass
                ws = self._reconnect(result)  # None → polling from now on
                state["own"] = ws
                entry = self.history(prompt_id)  # it may have finished while we were away
                if entry is not None and _finished(entry):
                    return entry
                continue
            if raw is None or time.time() - last_check > 30:
                last_check = time.time()
                entry = self.history(prompt_id)
                if entry is not None and _finished(entry):
                    return entry
                continue
            if isinstance(raw, bytes):
                continue  # binary previews
            try:
                msg = json.loads(raw)
            except ValueError:
                continue
            event, data = msg.get("type"), msg.get("data") or {}
            if data.get("prompt_id") not in (None, prompt_id):
                continue
            result.events.append([event, data])
            if on_event is not None and event != "status":
                on_event(event, data)
            if event == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
                for _ in range(50):  # the entry can land a moment after the message on some servers
                    entry = self.history(prompt_id)
                    if entry is not None:
                        return entry
                    time.sleep(0.1)
                raise RemoteError(f"prompt {prompt_id} finished but has no history entry")

    # --- all together ----------------------------------------------------------------------------
    def run(self, prompt: dict, output_dir: str, on_event: Optional[EventCallback] = None,
            extra_data: Optional[dict] = None, timeout_s: Optional[float] = None, storage=None,
            include_temp: bool = False, journal=None) -> RemoteResult:
        """Submit, follow, download into output_dir; with `storage`, push the files (keys journalled in
        `journal`, by default the state folder's journal of output_dir, opened for this push)."""
        started = time.perf_counter()
        try:
            ws = self.connect()  # before submitting, so no early event is missed
        except Exception:
            ws = None
        result = RemoteResult(prompt_id="", prompt=prompt)
        try:
            try:
                result.prompt_id = self.submit(prompt, extra_data)
            except RemoteError as exc:
                if exc.status == 400 and isinstance(exc.body, dict):
                    result.status, result.error = "invalid", exc.body
                    result.validation_summary = _error_text(exc.body)
                    return result
                raise
            entry = self.follow(result.prompt_id, result, ws, on_event, timeout_s)
        finally:
            if ws is not None:
                try:
                    ws.close()
                except Exception:
                    pass
        result.history = entry
        result.outputs = entry.get("outputs") or {}
        status = entry.get("status") or {}
        messages = status.get("messages") or []
        result.status = "success" if status.get("status_str") == "success" else "error"
        for event, data in messages:
            if event == "execution_error":
                result.error = data
            elif event == "execution_interrupted":
                result.status, result.error = "interrupted", data
            elif event == "execution_cached":
                result.cached = list(data.get("nodes") or [])
        # "executing" marks a node's start: the node that failed or was interrupted did not finish, and the
        # embedded executor does not list it either.
        unfinished = (result.error or {}).get("node_id") if result.status != "success" else None
        result.executed = []
        for event, data in result.events:
            node = data.get("node") if event == "executing" else None
            if node and node != unfinished and node not in result.executed:
                result.executed.append(node)
        result.files = self.collect(result.outputs, output_dir, include_temp, skipped=result.skipped)
        if storage is not None:  # keys journalled while they upload: a kill mid-push leaves nothing open
            from contextlib import nullcontext
            from .upload_journal import open_state_journal, push_outputs_journalled
            with (nullcontext(journal) if journal is not None else open_state_journal(output_dir, storage)) as box:
                result.published = push_outputs_journalled(storage, result.prompt_id, result.files, box)
        result.total_seconds = time.perf_counter() - started
        return result

    def collect(self, outputs: dict, output_dir: str, include_temp: bool = False,
                skipped: Optional[List[dict]] = None) -> List[dict]:
        """Every {filename, subfolder, type} under any ui key of any node (images, gifs, video, audio, files…).
        Entries that would land outside output_dir are not downloaded; they are appended to `skipped`."""
        from .results import ui_file_entries
        files, seen = [], set()
        for node_id, key, item in ui_file_entries(outputs):
            kind = item.get("type") or "output"
            if kind == "temp" and not include_temp:
                continue
            ident = (kind, item.get("subfolder") or "", item["filename"])
            if ident in seen:
                continue
            seen.add(ident)
            dest = os.path.join(output_dir, "temp") if kind == "temp" else output_dir
            if not _stays_inside(dest, item):
                # e.g. a memory bank a node saved to an absolute folder: ComfyUI's /view refuses it
                # (403) and the embedded executor skips such entries too; the rest still downloads
                if skipped is not None:
                    skipped.append({"node": node_id, "key": key, **item})
                continue
            path = self.download(item, dest)
            files.append({"node": node_id, "key": key, "filename": item["filename"],
                          "subfolder": item.get("subfolder") or "", "type": kind, "path": path})
        return files


def _stays_inside(dest_dir: str, item: dict) -> bool:
    """Whether a remote {filename, subfolder} entry lands inside dest_dir (symlinks followed)."""
    from vibeboard.common.paths import is_inside
    subfolder = item.get("subfolder") or ""
    if not isinstance(subfolder, str) or not isinstance(item.get("filename"), str) or "\x00" in subfolder + item["filename"]:
        return False
    return is_inside(os.path.join(dest_dir, subfolder, item["filename"]), dest_dir)


def _finished(entry: dict) -> bool:
    status = entry.get("status") or {}
    return bool(status.get("completed")) or status.get("status_str") in ("success", "error")


def _error_text(body) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        text = err.get("message", "")
        if err.get("details"):
            text += f": {err['details']}"
        for node_id, info in (body.get("node_errors") or {}).items():
            for item in info.get("errors", []):
                text += f"\n  node {node_id} ({info.get('class_type')}): {item.get('message')} {item.get('details', '')}"
        return text
    return str(body)[:500]
