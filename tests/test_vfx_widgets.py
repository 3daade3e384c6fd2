"""The canvas widgets load through the frontend's extension API in headless Chromium and write values the
Python side parses (vibeboard/camera/widget_values.py)."""
import functools
import http.server
import os
import shutil
import threading

import pytest

from chromium_page import CHROMIUM, run_page
from vibeboard.camera.widget_values import parse_boxes, parse_points

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

APP_STUB = """
export const app = { extensions: [], graph: null,
  registerExtension(ext) { this.extensions.push(ext); } };
"""

PAGE = """<!doctype html><html><body><div style="width:400px"><div id="host"></div></div><pre id="out">pending</pre>
<script type="module">
import { app } from "/scripts/app.js";
import "/extensions/vibeboard/vibeboard_widgets.js";
function makeNodeType() {
  function Node() {
    this.widgets = [];
    this.inputs = [];
    this.size = [400, 300];
    this.setDirtyCanvas = () => {};
    this.addDOMWidget = (name, type, el, opts) => {
      document.getElementById("host").appendChild(el);
      const w = { name, type, element: el, options: opts };
      this.widgets.push(w);
      return w;
    };
  }
  return Node;
}
function pointer(el, type, x, y, extra) {
  const r = el.getBoundingClientRect();
  el.dispatchEvent(new PointerEvent(type, { bubbles: true, pointerId: 1, clientX: r.left + x * r.width,
                                            clientY: r.top + y * r.height, ...(extra || {}) }));
}
function stroke(el, pts) {
  pointer(el, "pointerdown", ...pts[0]);
  for (const p of pts.slice(1)) pointer(el, "pointermove", ...p);
  pointer(el, "pointerup", ...pts[pts.length - 1]);
}
async function run() {
  const ext = app.extensions.find((e) => e.name === "vibeboard.canvas_widgets");
  const result = { registered: !!ext };
  for (const name of ["VBCameraPathDraw", "VBBoxesDraw", "SomethingElse"]) {
    const T = makeNodeType();
    await ext.beforeRegisterNodeDef(T, { name });
    const node = new T();
    node.widgets.push({ name: name === "VBBoxesDraw" ? "boxes" : "points", type: "customtext",
                        value: name === "VBBoxesDraw" ? '{"boxes": []}' : '{"points": []}' });
    node.onNodeCreated && node.onNodeCreated();
    const canvas = node.widgets.find((w) => w.type === "vibeboard_canvas");
    result[name] = { editor: !!canvas, serialize: canvas ? canvas.serialize : null };
    if (!canvas) continue;
    const el = canvas.element;
    if (name === "VBCameraPathDraw") {
      stroke(el, [[0.5, 0.5], [0.6, 0.45], [0.7, 0.4]]);
      result[name].first = node.widgets[0].value;
      stroke(el, [[0.7, 0.4], [0.75, 0.4]].map((p) => p));
      result[name].replaced = node.widgets[0].value;
    } else {
      stroke(el, [[0.1, 0.1], [0.25, 0.3], [0.4, 0.5]]);
      result[name].drawn = node.widgets[0].value;
      stroke(el, [[0.2, 0.2], [0.3, 0.3]]);
      result[name].moved = node.widgets[0].value;
      stroke(el, [[0.6, 0.6], [0.9, 0.9]]);
      const r = el.getBoundingClientRect();
      el.dispatchEvent(new MouseEvent("dblclick", { bubbles: true, clientX: r.left + 0.75 * r.width,
                                                    clientY: r.top + 0.75 * r.height }));
      result[name].deleted = node.widgets[0].value;
    }
  }
  document.getElementById("out").textContent = JSON.stringify(result);
}
run().catch((e) => { document.getElementById("out").textContent = "ERROR " + e + " " + e.stack; });
</script></body></html>"""


@pytest.fixture
def site(tmp_path):
    (tmp_path / "extensions" / "vibeboard").mkdir(parents=True)
    (tmp_path / "scripts").mkdir()
    shutil.copy(os.path.join(ROOT, "web", "js", "vibeboard_widgets.js"), tmp_path / "extensions" / "vibeboard")
    (tmp_path / "scripts" / "app.js").write_text(APP_STUB)
    (tmp_path / "test.html").write_text(PAGE)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/test.html"
    server.shutdown()


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")
def test_widgets_write_values_python_accepts(site):
    res = run_page(site)
    assert res["registered"]
    assert res["SomethingElse"] == {"editor": False, "serialize": None}  # other nodes untouched
    cam = res["VBCameraPathDraw"]
    assert cam["editor"] and cam["serialize"] is False  # no extra widgets_values slot
    pts = parse_points(cam["first"])
    assert len(pts) == 3
    for got, want in zip(pts, [[0.5, 0.5], [0.6, 0.45], [0.7, 0.4]]):
        assert abs(got[0] - want[0]) < 0.01 and abs(got[1] - want[1]) < 0.01
    assert len(parse_points(cam["replaced"])) == 2  # a new stroke replaces the path
    box = res["VBBoxesDraw"]
    drawn = parse_boxes(box["drawn"])
    assert len(drawn) == 1 and abs(drawn[0]["x1"] - 0.4) < 0.01 and abs(drawn[0]["y1"] - 0.5) < 0.01
    moved = parse_boxes(box["moved"])[0]
    assert abs(moved["x0"] - 0.2) < 0.01 and abs(moved["y0"] - 0.2) < 0.01  # dragged by (0.1, 0.1)
    assert len(parse_boxes(box["deleted"])) == 1  # second box drawn then double-click-deleted


def test_widget_file_is_where_web_directory_points():
    src = open(os.path.join(ROOT, "__init__.py")).read()
    assert 'WEB_DIRECTORY = "./web/js"' in src
    js = open(os.path.join(ROOT, "web", "js", "vibeboard_widgets.js")).read()
    assert 'from "../../scripts/app.js"' in js and "registerExtension" in js
