"""The official ComfyUI editor (comfyui-frontend-package) served by `vibeboard serve`, driven in headless Chromium as
an artist would use it: log in with the token, see our nodes in the node library, load workflows/optics_engine.json,
press Run, get the bokeh still and the MP4 player in the page, save the workflow and find it after a restart.

Every HTTP response the page gets is logged; any non-2xx from our server fails the test. The screenshots land in
build/test-artefacts/ (or $VIBEBOARD_TEST_ARTEFACTS)."""
import json
import os
import time
import urllib.error
import urllib.request

import pytest

from chromium_page import CHROMIUM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARTEFACTS = os.environ.get("VIBEBOARD_TEST_ARTEFACTS") or os.path.join(ROOT, "build", "test-artefacts")
TOKEN = "frontend-test-token"

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (.ci/run installs it)"),
    pytest.mark.skipif(__import__("importlib").util.find_spec("comfyui_frontend_package") is None,
                       reason="comfyui-frontend-package is not installed (pip install 'vibeboard[service]')"),
]


def start_server(base):
    from vibeboard_runner.server import ServerConfig, VibeServer
    os.makedirs(os.path.join(base, "state"), exist_ok=True)
    config = ServerConfig(port=0, token=TOKEN, output_dir=os.path.join(base, "output"),
                          input_dir=os.path.join(base, "input"), temp_dir=os.path.join(base, "temp"),
                          db_path=os.path.join(base, "state", "jobs.sqlite"))
    return VibeServer(config).start_in_thread()


def status_of(url, headers=None):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def our_failures(browser, server_url):
    """Non-2xx responses and failed loads from our server (the page may also try the internet; a pod may have
    none, so those are only reported)."""
    bad = [(status, url) for status, url in browser.responses
           if url.startswith(server_url) and not 200 <= status < 300]
    bad += [(error, url) for error, url in browser.failures if url.startswith(server_url)]
    return bad


def open_sidebar_tab(browser, name):
    """Sidebar buttons: data-testid in newer frontends, a class in older ones (1.27)."""
    browser.evaluate(f"(document.querySelector('[data-testid={name}-tab-button]')"
                     f" || document.querySelector('.{name}-tab-button')).click(); 1")


def wait_editor(browser):
    browser.wait_for("!!(window.app && window.app.graph && document.querySelector('[data-testid=queue-button]'))",
                     90, "the editor to load")


def press_run(browser):
    """Click the editor's Run button as a user does. In frontend 1.27 `data-testid=queue-button` sits on PrimeVue's
    SplitButton wrapper <div>, which ignores clicks: the Run action is its first <button> (newer frontends put the
    test id on the button itself)."""
    return browser.evaluate("(() => { const root = document.querySelector('[data-testid=queue-button]');"
                            " const button = root.tagName === 'BUTTON' ? root : root.querySelector('button');"
                            " button.click(); return button.getAttribute('aria-label') || button.innerText })()")


def run_optics_engine(browser):
    """Load workflows/optics_engine.json, make it small (2 CPU cores), press Run; the MP4 player's [src, w, h] and
    the bokeh still's [src, width] once the page shows them."""
    workflow = open(os.path.join(ROOT, "workflows", "optics_engine.json"), encoding="utf-8").read()
    browser.evaluate(f"""(async () => {{
        await app.loadGraphData({workflow});
        const scene = app.graph.getNodeById(1), rack = app.graph.getNodeById(2);
        scene.widgets.find((w) => w.name === "width").value = 192;
        scene.widgets.find((w) => w.name === "height").value = 108;
        rack.widgets.find((w) => w.name === "frames").value = 4;
        return true; }})()""")
    press_run(browser)
    video = browser.wait_for(
        "(() => { const v = [...document.querySelectorAll('video')].find((v) => v.src.includes('.mp4'));"
        " return v && v.readyState >= 2 ? [v.src, v.videoWidth, v.videoHeight] : null })()",
        60, "the MP4 player to show the rack-focus clip")
    still = browser.wait_for(
        "(() => { const imgs = app.graph.getNodeById(5).imgs || [];"
        " return imgs.length && imgs[0].naturalWidth ? [imgs[0].src, imgs[0].naturalWidth] : null })()",
        30, "the bokeh still on the Save bokeh node")
    return video, still


def test_editor_runs_optics_engine_and_keeps_saved_workflow(tmp_path):
    from chromium_page import Browser
    server = start_server(str(tmp_path))
    browser = Browser()
    try:
        # the token covers the page and its routes
        assert status_of(server.url + "/") == 401
        assert status_of(server.url + "/api/settings") == 401
        assert status_of(server.url + "/?token=wrong") == 401
        assert status_of(server.url + "/api/settings", {"Authorization": f"Bearer {TOKEN}"}) == 200

        browser.goto(f"{server.url}/?token={TOKEN}")  # sets the cookie, then redirects to / without the token
        wait_editor(browser)
        browser.pump(2)
        assert browser.evaluate("location.search") == ""
        assert not browser.evaluate("[...document.querySelectorAll('.p-dialog-mask')].length"), \
            "a dialog covers the editor on first start"

        # our nodes are in the node library
        from vibeboard_runner.registry import NodeRegistry
        ours = sorted(n for n in NodeRegistry.default(embedded=True).classes if n.startswith("VB"))
        registered = browser.evaluate("Object.keys(LiteGraph.registered_node_types)")
        assert set(ours) <= set(registered), sorted(set(ours) - set(registered))[:10]
        open_sidebar_tab(browser, "node-library")
        browser.wait_for("document.body.innerText.includes('VibeBoard')", 20, "VibeBoard in the node library")

        # load the Optics Engine workflow, make it small (2 CPU cores), press Run
        video, still = run_optics_engine(browser)
        assert "rack_focus" in video[0] and video[1:] == [192, 108], video
        still = browser.wait_for(
            "(() => { const imgs = app.graph.getNodeById(5).imgs || [];"
            " return imgs.length && imgs[0].naturalWidth ? [imgs[0].src, imgs[0].naturalWidth] : null })()",
            30, "the bokeh still on the Save bokeh node")
        assert "bokeh" in still[0] and still[1] == 192, still
        browser.pump(1)
        browser.screenshot(os.path.join(ARTEFACTS, "frontend_optics_engine_run.png"))

        # the MP4 carries its recipe: dropped on an empty canvas, it reopens the workflow
        restored = browser.evaluate(f"""(async () => {{
            const blob = await (await fetch({json.dumps(video[0])})).blob();
            app.graph.clear();
            await app.handleFile(new File([blob], "rack_focus.mp4", {{type: "video/mp4"}}));
            return app.graph._nodes.map((n) => n.type); }})()""")
        assert "VBBokehRender" in restored and "VBRackFocus" in restored, restored

        # the job appears in the newer jobs panel's API with its outputs
        jobs = browser.evaluate("(async () => (await (await app.api.fetchApi('/jobs?status=completed,failed,cancelled"
                                "&limit=10&offset=0')).json()))()")
        assert jobs["jobs"][0]["status"] == "completed" and jobs["jobs"][0]["outputs_count"] == 2, jobs

        # save from the page: the Save command asks for a name in the editor's own prompt dialog
        browser.evaluate("app.extensionManager.command.execute('Comfy.SaveWorkflow'); 1")
        # the prompt dialog: role=dialog (reka-ui) in newer frontends, PrimeVue's .p-dialog in older ones
        dialog = "[...document.querySelectorAll('[role=dialog], .p-dialog')].find((d) => d.querySelector('input'))"
        browser.wait_for(f"!!({dialog})", 20, "the save dialog")
        button = browser.evaluate(f"""(() => {{ const box = {dialog}, input = box.querySelector('input');
            input.value = 'my optics'; input.dispatchEvent(new Event('input', {{bubbles: true}}));
            const buttons = [...box.querySelectorAll('button')];
            const confirm = buttons.find((b) => ['Save', 'Confirm', 'OK'].includes(b.innerText.trim()))
                            || buttons[buttons.length - 1];
            confirm.click(); return confirm.innerText.trim() }})()""")
        saved = os.path.join(str(tmp_path), "state", "user", "default", "workflows", "my optics.json")
        deadline = time.time() + 20
        while not os.path.exists(saved) and time.time() < deadline:
            browser.pump(0.5)
        assert os.path.exists(saved), (button, os.listdir(os.path.dirname(saved)))
        assert "VBBokehRender" in open(saved, encoding="utf-8").read()
        first_bad = our_failures(browser, server.url)
    finally:
        server.stop_thread()

    # restart: the cookie still opens the editor and the saved workflow is listed and opens
    server = start_server(str(tmp_path))
    try:
        browser.responses.clear()
        browser.failures.clear()
        browser.goto(server.url + "/")
        wait_editor(browser)
        open_sidebar_tab(browser, "workflows")
        browser.wait_for("document.body.innerText.includes('my optics')", 20, "the saved workflow in the sidebar")
        content = browser.evaluate(
            "(async () => await (await app.api.getUserData('workflows/my optics.json')).json())()")
        assert any(node["type"] == "VBBokehRender" for node in content["nodes"])
        browser.screenshot(os.path.join(ARTEFACTS, "frontend_after_restart.png"))
        second_bad = our_failures(browser, server.url)
        outside = [f for f in browser.failures if not f[1].startswith(server.url)]
    finally:
        server.stop_thread()
        browser.close()
    print("requests outside this server that failed (no internet in tests):", outside)
    assert not first_bad and not second_bad, json.dumps(first_bad + second_bad, indent=1)


def test_saved_workflows_load_at_full_size_without_overlaps(tmp_path):
    """In the frontend itself: no node smaller than the size it computes for its widgets, no overlap on load, every
    node inside exactly one section group (as the frontend computes group membership)."""
    import glob
    from chromium_page import Browser
    server = start_server(str(tmp_path))
    browser = Browser()
    problems = {}
    try:
        browser.goto(f"{server.url}/?token={TOKEN}")
        wait_editor(browser)
        for path in sorted(glob.glob(os.path.join(ROOT, "workflows", "*.json"))):
            if path.endswith(".api.json"):
                continue
            text = open(path, encoding="utf-8").read()
            found = browser.evaluate(f"""(async () => {{
                await app.loadGraphData({text});
                const nodes = app.graph._nodes, out = {{small: [], overlap: [], groups: []}};
                // the frontend's own group membership: every node in exactly one section group
                const count = {{}};
                for (const g of app.graph._groups || []) {{ g.recomputeInsideNodes?.();
                    for (const n of (g.nodes || g._nodes || [])) count[n.id] = (count[n.id] || 0) + 1; }}
                for (const n of nodes) if (count[n.id] !== 1) out.groups.push([n.id, count[n.id] || 0]);
                const box = (n) => {{ const b = new Float32Array(4);
                    if (n.getBounding) n.getBounding(b); else b.set(n.boundingRect); return b; }};
                for (const n of nodes) {{ const m = n.computeSize();
                    if (n.size[0] + 1 < m[0] || n.size[1] + 1 < m[1]) out.small.push(n.id); }}
                for (let i = 0; i < nodes.length; i++) for (let j = i + 1; j < nodes.length; j++) {{
                    const a = box(nodes[i]), b = box(nodes[j]);
                    if (a[0] < b[0] + b[2] && b[0] < a[0] + a[2] && a[1] < b[1] + b[3] && b[1] < a[1] + a[3])
                        out.overlap.push([nodes[i].id, nodes[j].id]); }}
                return out; }})()""")
            if found["small"] or found["overlap"] or found["groups"]:
                problems[os.path.basename(path)] = found
        browser.screenshot(os.path.join(ARTEFACTS, "frontend_last_workflow.png"))
    finally:
        browser.close()
        server.stop_thread()
    assert not problems, f"run tools/layout_workflows.py: {problems}"


FRONTEND_1_27 = os.environ.get("VIBEBOARD_FRONTEND_1_27_ROOT")


@pytest.mark.skipif(not FRONTEND_1_27, reason="set VIBEBOARD_FRONTEND_1_27_ROOT to a comfyui-frontend-package 1.27.x "
                                              "static/ folder (.ci/run downloads one) to run the editor 1.27 check")
def test_run_button_in_frontend_1_27_produces_outputs(tmp_path):
    """ComfyUI 0.3.64 ships frontend 1.27; `vibeboard serve --front-end-root` serves it, and its Run button (the
    SplitButton's first <button>) runs the Optics Engine with the still and the MP4 player in the page."""
    from chromium_page import Browser
    from vibeboard_runner.server import ServerConfig, VibeServer
    config = ServerConfig(port=0, output_dir=str(tmp_path / "output"), input_dir=str(tmp_path / "input"),
                          temp_dir=str(tmp_path / "temp"), db_path=str(tmp_path / "jobs.sqlite"),
                          front_end_root=FRONTEND_1_27)
    server = VibeServer(config).start_in_thread()
    browser = Browser()
    try:
        browser.goto(server.url + "/")
        wait_editor(browser)
        version = browser.evaluate("(window.__COMFYUI_FRONTEND_VERSION__ || '')")
        assert not version or version.startswith("1.27"), version
        assert browser.evaluate("document.querySelector('[data-testid=queue-button]').tagName") == "DIV"
        video, still = run_optics_engine(browser)
        assert "rack_focus" in video[0] and video[1:] == [192, 108], video
        assert "bokeh" in still[0] and still[1] == 192, still
        browser.screenshot(os.path.join(ARTEFACTS, "frontend_1_27_optics_engine_run.png"))
        bad = our_failures(browser, server.url)
    finally:
        browser.close()
        server.stop_thread()
    assert not bad, bad
