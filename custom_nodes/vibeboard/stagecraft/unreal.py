"""Unreal Engine Remote Control API client (HTTP, port 30010), LAN-only by design.

Endpoints and bodies as Epic documents them (Remote Control API HTTP reference):
  PUT /remote/object/property  {"objectPath", "access": "WRITE_ACCESS" | "READ_ACCESS" | "WRITE_TRANSACTION_ACCESS",
                                "propertyName", "propertyValue": {<propertyName>: value}}
  PUT /remote/object/call      {"objectPath", "functionName", "parameters": {...}, "generateTransaction": bool}
  GET /remote/presets ; GET /remote/preset/<name>
  PUT /remote/preset/<name>/property/<label>  {"PropertyValue": value, "GenerateTransaction": bool}
  PUT /remote/preset/<name>/function/<label>  {"Parameters": {...}, "GenerateTransaction": bool}
  PUT /remote/batch            {"Requests": [{"RequestId", "URL", "Verb", "Body"}]}
Epic: never expose this port to the internet — LAN or VPN only. So: loopback by default, private-network
addresses only with `allow_lan=True`, public addresses never.

Units: the blocking/GLB frame is glTF (metres, Y up, right-handed); Unreal is centimetres, Z up, X forward,
Y right (left-handed): UE = 100 · (−z, x, y).
"""
from __future__ import annotations

import ipaddress
import json
import math
import socket
import urllib.error
import urllib.parse
import urllib.request

import numpy as np

DEFAULT_PORT = 30010


class UnrealRefused(ValueError):
    """The target is not an allowed address (public, or LAN without allow_lan)."""


class UnrealError(RuntimeError):
    """Unreal answered with an error, or not at all."""


def check_target(host: str, allow_lan: bool = False) -> None:
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnrealRefused(f"Unreal host {host!r} does not resolve: {exc}") from None
    for info in infos:
        ip = ipaddress.ip_address(info[4][0].split("%")[0])
        if ip.is_loopback:
            continue
        if ip.is_private or ip.is_link_local:
            if allow_lan:
                continue
            raise UnrealRefused(f"{host} ({ip}) is on the LAN: pass allow_lan=True to control an editor there")
        raise UnrealRefused(f"{host} ({ip}) is a public address: Remote Control must never be used over the "
                            "internet (LAN/VPN only)")


def to_unreal_location(p) -> dict:
    x, y, z = (float(v) for v in p)
    return {"X": -z * 100.0, "Y": x * 100.0, "Z": y * 100.0}


def to_unreal_rotation(forward) -> dict:
    """A glTF-frame viewing direction → Unreal rotator (degrees; yaw about Z from X toward Y, pitch up)."""
    fx, fy, fz = (float(v) for v in forward)
    ue = np.array([-fz, fx, fy])
    yaw = math.degrees(math.atan2(ue[1], ue[0]))
    pitch = math.degrees(math.atan2(ue[2], math.hypot(ue[0], ue[1])))
    return {"Pitch": pitch, "Yaw": yaw, "Roll": 0.0}


class UnrealRemote:
    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT, allow_lan: bool = False,
                 timeout: float = 5.0):
        check_target(host, allow_lan)
        self.base = f"http://{host}:{int(port)}"
        self.timeout = timeout

    def request(self, verb: str, url: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + url, data=data, method=verb,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                text = resp.read().decode() or "{}"
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            raise UnrealError(f"Unreal {verb} {url}: HTTP {exc.code} {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise UnrealError(f"Unreal {verb} {url}: no answer from {self.base} ({exc})") from None
        try:
            return json.loads(text)
        except ValueError:
            raise UnrealError(f"Unreal {verb} {url}: answer is not JSON") from None

    # --- objects -----------------------------------------------------------------------------------
    def set_property(self, object_path: str, name: str, value, transaction: bool = False) -> dict:
        return self.request("PUT", "/remote/object/property", {
            "objectPath": object_path, "access": "WRITE_TRANSACTION_ACCESS" if transaction else "WRITE_ACCESS",
            "propertyName": name, "propertyValue": {name: value}})

    def get_property(self, object_path: str, name: str):
        out = self.request("PUT", "/remote/object/property", {"objectPath": object_path, "access": "READ_ACCESS",
                                                               "propertyName": name})
        return out.get(name, out)

    def call(self, object_path: str, function: str, parameters: dict | None = None,
             transaction: bool = False) -> dict:
        return self.request("PUT", "/remote/object/call", {"objectPath": object_path, "functionName": function,
                                                           "parameters": parameters or {},
                                                           "generateTransaction": bool(transaction)})

    # --- presets -----------------------------------------------------------------------------------
    def presets(self) -> list:
        return [p.get("Name") for p in self.request("GET", "/remote/presets").get("Presets", [])]

    def preset(self, name: str) -> dict:
        return self.request("GET", "/remote/preset/" + urllib.parse.quote(name, safe=""))

    def set_preset_property(self, preset: str, label: str, value, transaction: bool = False) -> dict:
        url = f"/remote/preset/{urllib.parse.quote(preset, safe='')}/property/{urllib.parse.quote(label, safe='')}"
        return self.request("PUT", url, {"PropertyValue": value, "GenerateTransaction": bool(transaction)})

    def call_preset_function(self, preset: str, label: str, parameters: dict | None = None) -> dict:
        url = f"/remote/preset/{urllib.parse.quote(preset, safe='')}/function/{urllib.parse.quote(label, safe='')}"
        return self.request("PUT", url, {"Parameters": parameters or {}, "GenerateTransaction": False})

    def batch(self, requests: list) -> dict:
        """requests: (verb, url, body) tuples sent as one PUT /remote/batch."""
        return self.request("PUT", "/remote/batch", {"Requests": [
            {"RequestId": i, "URL": url, "Verb": verb, "Body": body} for i, (verb, url, body) in enumerate(requests)]})


class UnrealWebSocket:
    """The same API over the WebSocket server (port 30020): `{"MessageName": "http", "Parameters": {"Url",
    "Verb", "Body"}, "Id"}` → `{"RequestId", "ResponseCode", "ResponseBody"}`; `preset.register` subscribes to
    a preset's events (`{"Type": "PresetFieldsChanged", ...}`), which arrive between replies and are queued."""

    def __init__(self, host: str = "127.0.0.1", port: int = 30020, allow_lan: bool = False, timeout: float = 5.0):
        import websocket  # websocket-client, already a VibeBoard dependency

        check_target(host, allow_lan)
        try:
            self.ws = websocket.create_connection(f"ws://{host}:{int(port)}", timeout=timeout)
        except (OSError, websocket.WebSocketException) as exc:
            raise UnrealError(f"Unreal WebSocket ws://{host}:{port}: no answer ({exc})") from None
        self.next_id = 1
        self.pending_events: list = []

    def _receive(self) -> dict:
        import websocket

        try:
            text = self.ws.recv()
            return json.loads(text)
        except (OSError, websocket.WebSocketException) as exc:
            raise UnrealError(f"Unreal WebSocket: connection lost ({exc})") from None
        except ValueError:
            raise UnrealError("Unreal WebSocket: a message that is not JSON") from None

    def http(self, verb: str, url: str, body: dict | None = None) -> dict:
        request_id, self.next_id = self.next_id, self.next_id + 1
        self.ws.send(json.dumps({"MessageName": "http", "Id": request_id,
                                 "Parameters": {"Url": url, "Verb": verb, "Body": body or {}}}))
        while True:
            msg = self._receive()
            if "ResponseCode" not in msg:
                self.pending_events.append(msg)  # a preset event that arrived first
                continue
            if msg.get("RequestId") not in (request_id, -1):
                continue
            if int(msg["ResponseCode"]) >= 400:
                raise UnrealError(f"Unreal {verb} {url}: {msg['ResponseCode']} {msg.get('ResponseBody')}")
            return msg.get("ResponseBody") or {}

    def register_preset(self, name: str) -> None:
        self.ws.send(json.dumps({"MessageName": "preset.register", "Parameters": {"PresetName": name}}))

    def events(self, count: int = 1) -> list:
        """The next `count` preset events (queued ones first)."""
        while len(self.pending_events) < count:
            self.pending_events.append(self._receive())
        out, self.pending_events = self.pending_events[:count], self.pending_events[count:]
        return out

    def close(self):
        self.ws.close()


def beat_requests(doc, frame: int, actor_paths: dict, camera_paths: dict, camera_components: dict | None = None) -> list:
    """The Remote Control calls that pose the set at a scene frame: each actor and camera actor moved with
    K2_SetActorLocationAndRotation (teleport, no sweep); each camera component's FieldOfView set to the lens."""
    from .blocking import Blocking

    doc = Blocking.parse(doc)
    reqs = []
    for name, path in actor_paths.items():
        body = {"objectPath": path, "functionName": "K2_SetActorLocationAndRotation", "generateTransaction": False,
                "parameters": {"NewLocation": to_unreal_location(doc.actor_position(name, frame)),
                               "NewRotation": to_unreal_rotation(doc.actor_facing(name, frame)),
                               "bSweep": False, "bTeleport": True}}
        reqs.append(("PUT", "/remote/object/call", body))
    for name, path in camera_paths.items():
        c2w = doc.camera_c2w(name, frame)
        body = {"objectPath": path, "functionName": "K2_SetActorLocationAndRotation", "generateTransaction": False,
                "parameters": {"NewLocation": to_unreal_location(c2w[:3, 3]),
                               "NewRotation": to_unreal_rotation(c2w[:3, 2]), "bSweep": False, "bTeleport": True}}
        reqs.append(("PUT", "/remote/object/call", body))
    for name, path in (camera_components or {}).items():
        reqs.append(("PUT", "/remote/object/property", {"objectPath": path, "access": "WRITE_ACCESS",
                                                         "propertyName": "FieldOfView",
                                                         "propertyValue": {"FieldOfView": doc.hfov(name)}}))
    return reqs
