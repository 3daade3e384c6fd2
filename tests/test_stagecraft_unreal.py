"""Unreal Remote Control client against a loopback HTTP server answering with the documented JSON."""
import json
import os
import threading

import pytest

from vibeboard.common.replay_server import LoopbackServer, json_reply
from vibeboard.stagecraft.unreal import (UnrealError, UnrealRefused, UnrealRemote, beat_requests, check_target,
                                         to_unreal_location, to_unreal_rotation)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class FakeUnreal(LoopbackServer):
    """Speaks the Remote Control HTTP API's JSON (a tiny in-memory editor) on the pack's loopback server."""

    def __init__(self):
        super().__init__()
        self.log, self.props = [], {}

    def answer(self, request):
        method, path = request["method"], request["path"]
        body = json.loads(request["body"] or b"{}") if method == "PUT" else None
        self.log.append((method, path, body))
        if method == "GET" and path == "/remote/presets":
            return json_reply(200, {"Presets": [{"Name": "Stage", "ID": "1", "Path": "/Game/Stage.Stage"}]})
        if method == "GET" and path == "/remote/preset/Stage":
            return json_reply(200, {"Preset": {"Name": "Stage", "Groups": []}})
        if method != "PUT":
            return json_reply(404, {"errorMessage": "not found"})
        if path == "/remote/object/property":
            key = (body["objectPath"], body["propertyName"])
            if body["access"] == "READ_ACCESS":
                if key not in self.props:
                    return json_reply(400, {"errorMessage": "property not found"})
                return json_reply(200, {body["propertyName"]: self.props[key]})
            self.props[key] = body["propertyValue"][body["propertyName"]]
            return json_reply(200, {})
        if path == "/remote/object/call":
            return json_reply(200, {"ReturnValue": True})
        if path == "/remote/batch":
            return json_reply(200, {"Responses": [{"RequestId": r["RequestId"], "ResponseCode": 200,
                                                   "ResponseBody": {}} for r in body["Requests"]]})
        if path.startswith("/remote/preset/Stage/property/"):
            return json_reply(200, {})
        return json_reply(404, {"errorMessage": "no route"})


@pytest.fixture
def unreal():
    with FakeUnreal() as fake:
        yield UnrealRemote("127.0.0.1", fake.port), fake


def test_property_round_trip_sends_the_documented_bodies(unreal):
    client, fake = unreal
    client.set_property("/Game/Map.Map:PersistentLevel.Lamp_1.LightComponent0", "Intensity", 5000.0)
    assert fake.log[-1] == ("PUT", "/remote/object/property", {
        "objectPath": "/Game/Map.Map:PersistentLevel.Lamp_1.LightComponent0", "access": "WRITE_ACCESS",
        "propertyName": "Intensity", "propertyValue": {"Intensity": 5000.0}})
    assert client.get_property("/Game/Map.Map:PersistentLevel.Lamp_1.LightComponent0", "Intensity") == 5000.0
    assert client.presets() == ["Stage"]
    client.set_preset_property("Stage", "Sun Angle", 30)
    assert fake.log[-1] == ("PUT", "/remote/preset/Stage/property/Sun%20Angle",
                            {"PropertyValue": 30, "GenerateTransaction": False})
    with pytest.raises(UnrealError, match="400"):
        client.get_property("/Game/Missing", "Nope")


def test_a_beat_poses_actors_and_cameras_in_unreal_units(unreal):
    client, fake = unreal
    doc = json.load(open(os.path.join(ROOT, "workflows", "inputs", "stagecraft_blocking.json")))
    reqs = beat_requests(doc, 0, {"bob": "/Game/Map.Map:PersistentLevel.Bob"},
                         {"A": "/Game/Map.Map:PersistentLevel.CamA"}, {"A": "/Game/Map.Map:PersistentLevel.CamA.Cam"})
    out = client.batch(reqs)
    assert len(out["Responses"]) == 3
    sent = fake.log[-1][2]["Requests"]
    bob = sent[0]["Body"]["parameters"]
    assert sent[0]["URL"] == "/remote/object/call" and sent[0]["Body"]["functionName"] == "K2_SetActorLocationAndRotation"
    assert bob["NewLocation"] == pytest.approx({"X": 300.0, "Y": -220.0, "Z": 0.0})  # (-2.2, 0, -3) m
    assert bob["NewRotation"]["Yaw"] == pytest.approx(90.0)  # facing +x (glTF) = +Y (Unreal)
    fov = sent[2]["Body"]
    assert fov["propertyName"] == "FieldOfView" and fov["propertyValue"]["FieldOfView"] == pytest.approx(73.74, abs=0.01)


def test_unit_conversion_keeps_handedness():
    assert to_unreal_location((1, 2, -3)) == {"X": 300.0, "Y": 100.0, "Z": 200.0}
    assert to_unreal_rotation((0, 0, -1))["Yaw"] == pytest.approx(0.0)  # glTF forward (-Z) = Unreal +X
    assert to_unreal_rotation((0, 1, -1))["Pitch"] == pytest.approx(45.0)


def test_non_loopback_targets_are_refused_by_default():
    with pytest.raises(UnrealRefused, match="LAN"):
        check_target("192.168.1.20")
    check_target("192.168.1.20", allow_lan=True)
    with pytest.raises(UnrealRefused, match="public"):
        check_target("8.8.8.8", allow_lan=True)
    check_target("127.0.0.1")


def test_no_editor_is_a_clear_error():
    client = UnrealRemote("127.0.0.1", 9, timeout=0.5)
    with pytest.raises(UnrealError, match="no answer"):
        client.presets()


def test_websocket_api_round_trips_and_queues_preset_events():
    import asyncio

    from aiohttp import WSMsgType, web

    from vibeboard.stagecraft.unreal import UnrealWebSocket

    seen = []

    async def handler(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            seen.append(data)
            if data["MessageName"] == "preset.register":
                continue
            if data["MessageName"] == "http":
                # an editor-side change arrives before the reply, as preset events can
                await ws.send_json({"Type": "PresetFieldsChanged", "PresetName": "Stage",
                                    "ChangedFields": [{"PropertyLabel": "Sun Angle", "PropertyValue": 30}]})
                body = data["Parameters"]["Body"]
                code = 200 if body.get("objectPath") != "/Game/Missing" else 400
                await ws.send_json({"RequestId": data["Id"], "ResponseCode": code,
                                    "ResponseBody": {body.get("propertyName", "x"): 1}})
        return ws

    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = site._server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        client = UnrealWebSocket("127.0.0.1", port)
        client.register_preset("Stage")
        body = {"objectPath": "/Game/Map.Map:PersistentLevel.Lamp", "access": "READ_ACCESS",
                "propertyName": "Intensity"}
        assert client.http("PUT", "/remote/object/property", body) == {"Intensity": 1}
        assert seen[0] == {"MessageName": "preset.register", "Parameters": {"PresetName": "Stage"}}
        assert seen[1] == {"MessageName": "http", "Id": 1,
                           "Parameters": {"Url": "/remote/object/property", "Verb": "PUT", "Body": body}}
        assert client.events(1)[0]["Type"] == "PresetFieldsChanged"
        with pytest.raises(UnrealError, match="400"):
            client.http("PUT", "/remote/object/property", {"objectPath": "/Game/Missing"})
        client.close()
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.run_until_complete(runner.cleanup())
        loop.close()
