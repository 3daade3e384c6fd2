"""The review page served by `vibeboard serve`: in headless Chromium a reviewer draws a rectangle on frames 40–48
of v001 with a note; after a server restart the page shows it again with the same geometry and range. The JSON API
refuses bad input with clear errors and keeps media inside the server's folders; a static export opens offline."""
import json
import os

import pytest
from aiohttp import web

from chromium_page import CHROMIUM, run_page
from sequencer_media import write_clip
from service_helpers import http
from vibeboard.dailies.store import DailiesStore


HARNESS = """<!doctype html><html><body><pre id="out">pending</pre>
<iframe id="f" src="/vibeboard/dailies/review?project=demo&shot=sh010&version=%s" width="1000" height="800"></iframe>
<script>
const MODE = "%s";
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(test, what) {
  for (let i = 0; i < 1200; i++) { const v = test(); if (v) return v; await sleep(50); }
  throw new Error("timeout waiting for " + (what ? what() : "the page"));
}
function pointer(doc, el, type, x, y) {
  const r = el.getBoundingClientRect();
  el.dispatchEvent(new doc.defaultView.PointerEvent(type, { bubbles: true, pointerId: 1,
    clientX: r.left + x * r.width, clientY: r.top + y * r.height }));
}
function annotations(doc) { return [...doc.querySelectorAll("#annotations li")].map((li) => JSON.parse(li.dataset.json)); }
async function run() {
  const frame = document.getElementById("f");
  const doc = await until(() => frame.contentDocument && frame.contentDocument.body &&
                                frame.contentDocument.body.dataset.ready === "1" && frame.contentDocument);
  if (MODE === "frame") {  // frame-accurate display: the colour of the drawn frame encodes its number
    const win = frame.contentWindow, video = doc.getElementById("video");
    await until(() => video.readyState >= 2 && doc.getElementById("video2").readyState >= 2);
    const video2 = doc.getElementById("video2");
    const pixel = async (x) => {
      await sleep(50);
      await until(() => !video.seeking && !video2.seeking && video.readyState >= 2 && video2.readyState >= 2,
                  () => JSON.stringify([video.seeking, video.readyState, video.currentTime, video2.seeking,
                                        video2.readyState, video2.currentTime]));
      win.draw();
      const d = doc.getElementById("view").getContext("2d").getImageData(x, 300, 1, 1).data;
      return [d[0], d[1], d[2]];
    };
    const result = {};
    for (const f of [0, 20, 37]) { win.seek(f); result["f" + f] = await pixel(600); }
    doc.getElementById("compare").value = "side"; win.draw();
    result.side = [await pixel(100), await pixel(600)];
    document.getElementById("out").textContent = JSON.stringify(result);
    return;
  }
  if (MODE === "draw") {
    doc.getElementById("in").value = 40; doc.getElementById("out").value = 48;
    doc.getElementById("noteText").value = "make the shirt red";
    const overlay = doc.getElementById("overlay");
    pointer(doc, overlay, "pointerdown", 0.6, 0.8);   // dragged up-left: stored as top-left / bottom-right
    pointer(doc, overlay, "pointermove", 0.4, 0.5);
    pointer(doc, overlay, "pointermove", 0.25, 0.3);
    pointer(doc, overlay, "pointerup", 0.25, 0.3);
    doc.getElementById("saveNote").click();
    await until(() => annotations(doc).length > 0);
  }
  const notes = [...doc.querySelectorAll("#notes li")].map((li) => li.textContent);
  document.getElementById("out").textContent = JSON.stringify({ annotations: annotations(doc), notes,
    title: doc.getElementById("title").textContent });
}
run().catch((e) => { document.getElementById("out").textContent = "ERROR " + e; });
</script></body></html>"""


def start(tmp_path, harness_mode=None):
    from vibeboard_runner.registry import NodeRegistry
    from vibeboard_runner.server import ServerConfig, VibeServer
    config = ServerConfig(host="127.0.0.1", port=0, output_dir=str(tmp_path / "output"),
                          input_dir=str(tmp_path / "input"), temp_dir=str(tmp_path / "temp"),
                          db_path=str(tmp_path / "jobs.sqlite"))
    server = VibeServer(config, registry=NodeRegistry.default(embedded=True))
    if harness_mode:
        async def harness(request):
            version = "sh010_v002" if harness_mode == "frame" else "sh010_v001"
            return web.Response(text=HARNESS % (version, harness_mode), content_type="text/html")
        server.app.router.add_get("/test-harness", harness)
    return server.start_in_thread()


def harness_page(tmp_path, harness_mode):
    """What the test harness page reports, on a fresh server in `harness_mode` (stopped afterwards)."""
    server = start(tmp_path, harness_mode)
    try:
        return run_page(server.url + "/test-harness", budget_ms=90000, timeout=150)
    finally:
        server.stop_thread()


@pytest.fixture()
def project(tmp_path):
    store = DailiesStore(str(tmp_path / "output" / "vibeboard" / "dailies" / "demo.sqlite"))
    media = write_clip(tmp_path / "output" / "take1.mp4", 60)
    v1 = store.add_version("sh010", media, {"seed": 1}, frames=60, fps=24)
    store.add_version("sh010", write_clip(tmp_path / "output" / "take2.mp4", 60, clip_id=1), {"seed": 2},
                      parent_id=v1["id"], frames=60, fps=24)
    return store


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")
def test_drawn_annotation_survives_a_server_restart(project, tmp_path):
    drawn = harness_page(tmp_path, "draw")
    assert drawn["title"].startswith("sh010 v001")
    shown = harness_page(tmp_path, "read")  # a new server over the same project file
    assert len(shown["annotations"]) == 1 and shown["annotations"] == drawn["annotations"]
    a = shown["annotations"][0]
    assert (a["version_id"], a["start_frame"], a["end_frame"], a["shape"]["type"]) == ("sh010_v001", 40, 48, "rectangle")
    (x0, y0), (x1, y1) = a["shape"]["points"]
    for got, want in ((x0, 0.25), (y0, 0.3), (x1, 0.6), (y1, 0.8)):
        assert abs(got - want) < 0.01
    assert any("make the shirt red" in n for n in shown["notes"])
    stored = DailiesStore(project.path).annotations(version_id="sh010_v001")
    assert stored[0]["shape"]["points"] == a["shape"]["points"]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")
def test_player_shows_the_exact_frame_and_compares_with_the_previous_version(project, tmp_path):
    shown = harness_page(tmp_path, "frame")
    for frame in (0, 20, 37):
        r, g, b = shown[f"f{frame}"]
        assert abs(g - 4 * frame) <= 6 and abs(b - 100) <= 8, (frame, shown[f"f{frame}"])  # v002 = clip id 1
    left, right = shown["side"]
    assert abs(left[2] - 40) <= 8 and abs(right[2] - 100) <= 8  # previous version (clip id 0) on the left
    assert abs(left[1] - 4 * 37) <= 6 and abs(right[1] - 4 * 37) <= 6  # both at the same frame


def test_review_api_checks_input_and_confines_media(project, tmp_path):
    server = start(tmp_path)
    base = server.url + "/vibeboard/dailies/api/demo"
    try:
        status, body, _ = http("GET", base + "/shots")
        assert status == 200 and [v["label"] for v in body["shots"][0]["versions"]] == ["v002", "v001"]
        status, body, _ = http("GET", base + "/versions/sh010_v002")
        assert status == 200 and body["previous"] == "sh010_v001"
        status, body, _ = http("POST", base + "/notes", {"version_id": "sh010_v001", "text": "x", "start_frame": 40,
                                                        "end_frame": 48, "shapes": [{"type": "rectangle",
                                                                                     "points": [[0, 0], [2, 2]]}]})
        assert status == 400 and "0 <= x, y <= 1" in body["error"]["message"]
        assert DailiesStore(project.path).notes(version_id="sh010_v001") == []  # nothing half-written
        status, body, _ = http("POST", base + "/status", {"version_id": "sh010_v001", "status": "approved"})
        assert status == 200 and body["status"] == "approved"
        status, body, _ = http("GET", server.url + "/vibeboard/dailies/api/..%2F..%2Fetc/shots")
        assert status in (400, 404)
        status, body, _ = http("GET", server.url + "/vibeboard/dailies/api/nothere/shots")
        assert status == 404 and "no Dailies project 'nothere'" in body["error"]["message"]
        status, payload, headers = http("GET", base + "/media/sh010_v001")
        assert status == 200 and payload[4:8] == b"ftyp"
        outside = write_clip(tmp_path / "elsewhere.mp4", 4)
        project.add_version("sh020", outside, frames=4, fps=24)
        status, body, _ = http("GET", base + "/media/sh020_v001")
        assert status == 403 and "outside the server's folders" in body["error"]["message"]
        status, text, _ = http("GET", base + "/export/sh010?format=csv")
        assert status == 200 and b"note_id" in text
    finally:
        server.stop_thread()


def test_static_export_opens_from_disk(project, tmp_path):
    from vibeboard.dailies.review_server import export_static
    note = project.add_note("sh010_v001", "too dark", 10, 12)
    project.add_annotation("sh010_v001", {"type": "arrow", "points": [[0.1, 0.1], [0.5, 0.5]]}, 10, 12, note["id"])
    index = export_static(project, str(tmp_path / "static"))
    assert sorted(os.listdir(tmp_path / "static" / "media")) == ["sh010_v001.mp4", "sh010_v002.mp4"]
    html = open(index).read()
    assert '<script src="data.js"></script>' in html
    data = json.loads(open(tmp_path / "static" / "data.js").read().split("=", 1)[1].rstrip().rstrip(";"))
    assert data["versions"]["sh010_v001"]["annotations"][0]["shape"]["type"] == "arrow"
    if CHROMIUM is None:
        return
    import subprocess
    page = subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           "--virtual-time-budget=15000", "--dump-dom", "file://" + index],
                          capture_output=True, text=True, timeout=60).stdout
    assert 'data-ready="1"' in page and "sh010 v001" in page  # opened from disk, no server
    assert "arrow on 10–12" in page


def test_page_mounts_on_comfyuis_own_server_when_present(tmp_path, monkeypatch):
    import sys
    import types
    from vibeboard.dailies.review_server import PAGE_ROUTE, mount_in_comfyui
    assert mount_in_comfyui() is False  # not inside ComfyUI
    table = web.RouteTableDef()
    fake_server = types.SimpleNamespace(PromptServer=types.SimpleNamespace(instance=types.SimpleNamespace(routes=table)))
    fake_paths = types.SimpleNamespace(get_output_directory=lambda: str(tmp_path / "o"),
                                       get_input_directory=lambda: str(tmp_path / "i"),
                                       get_temp_directory=lambda: str(tmp_path / "t"))
    monkeypatch.setitem(sys.modules, "server", fake_server)
    monkeypatch.setitem(sys.modules, "folder_paths", fake_paths)
    assert mount_in_comfyui() is True
    assert mount_in_comfyui() is False  # once
    assert PAGE_ROUTE in {route.path for route in table}
