"""The camera-path and boxes drawing surfaces (web/js/vibeboard_widgets.js) in the real ComfyUI editor served by
`vibeboard serve`: a 16:9 canvas in the default LiteGraph renderer and in Vue nodes, kept 16:9 when the node is
resized (a wider node grows taller), never smaller than 256×144. Screenshots of both renderers go to the test
artefacts (build/test-artefacts/ or $VIBEBOARD_TEST_ARTEFACTS)."""
import os

import pytest

from chromium_page import CHROMIUM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARTEFACTS = os.environ.get("VIBEBOARD_TEST_ARTEFACTS") or os.path.join(ROOT, "build", "test-artefacts")

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (.ci/run installs it)"),
    pytest.mark.skipif(__import__("importlib").util.find_spec("comfyui_frontend_package") is None,
                       reason="comfyui-frontend-package is not installed (pip install 'vibeboard[service]')"),
]

# Two drawing nodes side by side, then each made wider and then narrower than the minimum; after each step the
# CSS box of every drawing canvas and the node's size (the frontend lays DOM widgets out on animation frames).
MEASURE = """(async () => {
  const frame = () => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 50)));
  const settle = async () => { app.canvas.setDirty(true, true); for (let i = 0; i < 8; i++) await frame(); };
  const boxes = () => [...document.querySelectorAll('canvas.vibeboard-canvas-editor')].map((c) => {
    const r = c.getBoundingClientRect(); return [r.width, r.height, c.width, c.height]; });
  app.graph.clear();
  app.canvas.ds.scale = 1; app.canvas.ds.offset = [0, 0];
  const path = LiteGraph.createNode('VBCameraPathDraw'); path.pos = [80, 80]; app.graph.add(path);
  const draw = LiteGraph.createNode('VBBoxesDraw'); draw.pos = [620, 80]; app.graph.add(draw);
  await settle();
  const out = {created: {canvases: boxes(), sizes: [[...path.size], [...draw.size]]}};
  path.setSize([520, path.size[1]]); draw.setSize([200, draw.size[1]]);
  await settle();
  out.resized = {canvases: boxes(), sizes: [[...path.size], [...draw.size]],
                 min: [[...path.computeSize()], [...draw.computeSize()]]};
  return out; })()"""


def _assert_16_9(canvases, what):
    assert len(canvases) == 2, (what, canvases)
    for css_w, css_h, px_w, px_h in canvases:
        assert css_w >= 255 and css_h >= 143, (what, canvases)  # the minimum surface (rounding allowed)
        assert abs(css_w / css_h - 16 / 9) < 0.02, (what, canvases)  # on screen
        assert abs(px_w / px_h - 16 / 9) < 0.02, (what, canvases)  # and the backing store drawn on


def test_drawing_canvas_is_16_9_in_litegraph_and_vue_nodes(tmp_path):
    import sys
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    from layout_workflows import open_editor
    results = {}
    with open_editor() as browser:
        for renderer in ("litegraph", "vue"):
            if renderer == "vue":
                browser.evaluate("(async () => { await app.extensionManager.setting.set("
                                 "'Comfy.VueNodes.Enabled', true); return 1 })()")
                browser.pump(1)
            found = results[renderer] = browser.evaluate(MEASURE)
            if renderer == "vue":  # Vue nodes really rendered (not the canvas renderer under another name)
                assert browser.evaluate("document.querySelectorAll('[data-node-id]').length >= 2"), renderer
            browser.screenshot(os.path.join(ARTEFACTS, f"widget_canvas_{renderer}.png"))
            _assert_16_9(found["created"]["canvases"], f"{renderer}: new nodes")
            _assert_16_9(found["resized"]["canvases"], f"{renderer}: resized nodes")
            wide, narrow = found["resized"]["canvases"]
            assert wide[0] > found["created"]["canvases"][0][0] + 50, (renderer, found)  # grew with the node
            assert found["resized"]["sizes"][0][1] > found["created"]["sizes"][0][1], (renderer, found)  # taller
            assert narrow[0] < 290, (renderer, found)  # the narrow node is at its minimum surface
    print(results)
