"""The routes ComfyUI's editor calls on `vibeboard serve` (vibeboard_runner/frontend.py), over real HTTP: userdata confined to
the user's folder, settings, the login cookie, the jobs panel, templates."""
import json
import os
import time
import urllib.error
import urllib.request

import pytest

from service_helpers import make_server
from service_nodes import workflow

TOKEN = "routes-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def call(url, method="GET", body=None, headers=None):
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={**AUTH, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, (json.loads(raw) if raw[:1] in (b"{", b"[", b'"') else raw)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def server(tmp_path):
    srv = make_server(tmp_path, token=TOKEN)
    yield srv
    srv.stop_thread()


def test_userdata_save_list_move_delete_and_confinement(server, tmp_path):
    base = server.url + "/api/userdata/"
    status, info = call(base + "workflows%2Fshot%201.json?overwrite=true&full_info=true", "POST", {"nodes": []})
    assert status == 200 and info["path"] == "workflows/shot 1.json" and info["size"] > 0
    assert call(base + "workflows%2Fshot%201.json?overwrite=false", "POST", {"nodes": [1]})[0] == 409
    assert call(base + "workflows%2Fshot%201.json")[1] == {"nodes": []}
    status, listing = call(server.url + "/api/userdata?dir=workflows&recurse=true&split=false&full_info=true")
    assert status == 200 and [e["path"] for e in listing] == ["shot 1.json"]
    status, moved = call(base + "workflows%2Fshot%201.json/move/workflows%2Fold%2Fshot.json?full_info=true", "POST")
    assert status == 200 and moved["path"] == "workflows/old/shot.json"
    assert call(server.url + "/api/userdata?dir=workflows&recurse=false")[1] == []
    assert call(server.url + "/api/userdata?dir=workflows&recurse=true")[1] == ["old/shot.json"]
    assert call(base + "workflows%2Fold%2Fshot.json", "DELETE")[0] == 204
    assert call(base + "workflows%2Fold%2Fshot.json")[0] == 404
    # nothing leaves the user's folder: '..', absolute paths, a link planted inside it
    user_dir = tmp_path / "user" / "default"
    os.symlink(str(tmp_path), str(user_dir / "escape"))
    for bad in ("..%2F..%2Fjobs.sqlite", "%2Fetc%2Fpasswd", "escape%2Fjobs.sqlite"):
        assert call(base + bad)[0] == 403, bad
        assert call(base + bad, "POST", b"x")[0] == 403, bad
        assert call(base + bad, "DELETE")[0] == 403, bad
    assert call(base + "workflows%2Fa.json/move/..%2F..%2Fa.json", "POST")[0] in (403, 404)
    assert call(server.url + "/api/userdata?dir=..")[0] == 403
    assert os.path.exists(tmp_path / "jobs.sqlite")
    # files the editor asks for on every load answer with their empty defaults
    assert call(base + "user.css")[0] == 200 and call(base + "workflows%2F.index.json")[1] == {"favorites": []}


def test_settings_persist_and_merge(server, tmp_path):
    status, settings = call(server.url + "/api/settings")
    assert status == 200 and settings["Comfy.TutorialCompleted"] is True  # no first-start dialog
    assert call(server.url + "/api/settings/Comfy.ColorPalette", "POST", "light")[0] == 200
    assert call(server.url + "/api/settings", "POST", {"Comfy.LinkRenderMode": 2})[0] == 200
    assert call(server.url + "/api/settings/Comfy.ColorPalette")[1] == "light"
    stored = json.load(open(tmp_path / "user" / "default" / "comfy.settings.json"))
    assert stored["Comfy.ColorPalette"] == "light" and stored["Comfy.LinkRenderMode"] == 2
    assert call(server.url + "/api/settings", "POST", [1, 2])[0] == 400
    assert call(server.url + "/api/users")[1] == {"storage": "server", "migrated": True}


def test_login_cookie_is_same_origin_only(server):
    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as info:
        opener.open(server.url + f"/?token={TOKEN}")
    assert info.value.code == 302 and info.value.headers["Location"] == "/"
    cookie = info.value.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN in cookie
    jar = {"Cookie": f"vibeboard_token={TOKEN}"}

    def plain(path, headers):
        try:
            return urllib.request.urlopen(urllib.request.Request(server.url + path, headers=headers)).status
        except urllib.error.HTTPError as exc:
            return exc.code
    assert plain("/api/settings", jar) == 200
    assert plain("/api/settings", {**jar, "Origin": server.url}) == 200
    assert plain("/api/settings", {**jar, "Origin": "http://evil.example"}) == 401  # another site's page
    assert plain("/api/settings", {"Cookie": "vibeboard_token=wrong"}) == 401
    assert plain("/", {}) == 401 and plain("/?token=wrong", {}) == 401
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(server.url + "/")
    assert b"/?token=" in info.value.read()  # a person opening the page is told how to log in


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_jobs_panel_lists_queue_and_history(server):
    status, body = call(server.url + "/api/prompt", "POST", {"prompt": workflow(kind="png"), "client_id": "c1",
                                                             "extra_data": {"extra_pnginfo": {"workflow": {"id": "wf-1"}}}})
    assert status == 200
    job_id = body["prompt_id"]
    deadline = time.time() + 20
    while time.time() < deadline:
        jobs = call(server.url + "/api/jobs?status=completed,failed,cancelled&limit=10&offset=0")[1]
        if jobs["jobs"]:
            break
        time.sleep(0.1)
    (job,) = jobs["jobs"]
    assert job["id"] == job_id and job["status"] == "completed" and job["workflow_id"] == "wf-1"
    assert job["outputs_count"] == 1 and job["preview_output"]["mediaType"] == "images"
    assert jobs["pagination"] == {"offset": 0, "limit": 10, "total": 1, "has_more": False}
    assert call(server.url + "/api/jobs?status=in_progress,pending")[1]["jobs"] == []
    detail = call(server.url + f"/api/jobs/{job_id}")[1]
    assert detail["outputs"]["9"] and detail["workflow"]["prompt"]["9"]["class_type"] == "SvcSave"
    assert call(server.url + f"/api/jobs/{job_id}/cancel", "POST")[0] == 200  # finished: a no-op
    assert call(server.url + "/api/jobs/nope")[0] == 404
    assert call(server.url + "/api/jobs?limit=x")[0] == 400


def test_templates_and_static_routes(server):
    names = call(server.url + "/api/workflow_templates")[1]["vibeboard"]
    assert "optics_engine" in names and not any(n.endswith(".api") for n in names)
    status, graph = call(server.url + "/api/workflow_templates/vibeboard/optics_engine.json")
    assert status == 200 and "nodes" in graph
    assert call(server.url + "/api/workflow_templates/vibeboard/optics_engine.api.json")[0] == 404
    assert call(server.url + "/api/workflow_templates/vibeboard/..%2Fpyproject.toml")[0] in (403, 404)
    assert call(server.url + "/templates/index.json")[1] == []
    assert call(server.url + "/api/global_subgraphs")[1] == {}
    assert call(server.url + "/api/experiment/models")[1] == []
    assert call(server.url + "/api/i18n")[0] == 200
