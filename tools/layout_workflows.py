#!/usr/bin/env python3
"""Make the saved UI workflows look right in ComfyUI's editor: every node at least the size the frontend computes
for it (its widgets and slots), and no node overlapping another once loaded.

    python3 tools/layout_workflows.py [workflows/x.json …]     # default: every workflows/*.json UI file

It opens each workflow in the real frontend (comfyui-frontend-package, headless Chromium, on `vibeboard serve`),
reads each node's computed minimum size, writes `size = max(saved, minimum)`, then moves overlapping nodes down
their column. Only `size` and `pos` change, so the API twins stay equal. Re-run it after editing a workflow.
"""
from __future__ import annotations

import contextlib
import glob
import json
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TITLE_HEIGHT = 30  # LiteGraph.NODE_TITLE_HEIGHT: the title bar sits above `pos`
GAP = 20


def node_box(node) -> tuple:
    """(x0, y0, x1, y1) of a node on the canvas, title bar included."""
    pos, size = _pair(node["pos"]), _pair(node.get("size") or [0, 0])
    return pos[0], pos[1] - TITLE_HEIGHT, pos[0] + size[0], pos[1] + size[1]


def _pair(value) -> list:
    return [value["0"], value["1"]] if isinstance(value, dict) else list(value)


def overlaps(workflow: dict) -> list:
    boxes = [(n["id"], node_box(n)) for n in workflow.get("nodes", [])]
    found = []
    for index, (a_id, a) in enumerate(boxes):
        for b_id, b in boxes[index + 1:]:
            if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                found.append((a_id, b_id))
    return found


def resolve_overlaps(workflow: dict, max_moves: int = 10000) -> int:
    """Push the lower of two overlapping nodes below the other, until none overlap. Returns the moves made."""
    nodes = {n["id"]: n for n in workflow.get("nodes", [])}
    moves = 0
    while moves < max_moves:
        pairs = overlaps(workflow)
        if not pairs:
            return moves
        a, b = (nodes[i] for i in pairs[0])
        upper, lower = sorted((a, b), key=lambda n: (node_box(n)[1], node_box(n)[0], str(n["id"])))
        pos = _pair(lower["pos"])
        lower["pos"] = [pos[0], node_box(upper)[3] + GAP + TITLE_HEIGHT]
        moves += 1
    raise RuntimeError("could not separate the nodes")


def dump_like(original: str, data: dict) -> str:
    """Keep each file's own JSON style so the diff shows only the layout."""
    for indent in (2, 1, 4, None):
        for ascii_only in (True, False):
            text = json.dumps(json.loads(original), indent=indent, ensure_ascii=ascii_only)
            for tail in ("\n", ""):
                if text + tail == original:
                    return json.dumps(data, indent=indent, ensure_ascii=ascii_only) + tail
    return json.dumps(data, indent=2) + "\n"


@contextlib.contextmanager
def open_editor():
    """`vibeboard serve` on a temporary folder with the editor open in headless Chromium; yields the browser."""
    sys.path[:0] = [ROOT, os.path.join(ROOT, "custom_nodes"), os.path.join(ROOT, "tests")]
    from cdp_browser import Browser
    from vibeboard_runner.server import ServerConfig, VibeServer
    with tempfile.TemporaryDirectory() as tmp:
        config = ServerConfig(port=0, output_dir=os.path.join(tmp, "o"), input_dir=os.path.join(tmp, "i"),
                              temp_dir=os.path.join(tmp, "t"), db_path=os.path.join(tmp, "jobs.sqlite"))
        server = VibeServer(config).start_in_thread()
        browser = Browser()
        try:
            browser.goto(server.url + "/")
            browser.wait_for("!!(window.app && window.app.graph && window.LiteGraph)", 90, "the editor")
            yield browser
        finally:
            browser.close()
            server.stop_thread()


def minimum_sizes(paths: list) -> dict:
    """{path: {node_id: [w, h]}} as the frontend computes them after loading each workflow."""
    result = {}
    with open_editor() as browser:
        for path in paths:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
            result[path] = browser.evaluate(f"""(async () => {{
                await app.loadGraphData({text});
                const out = {{}};
                for (const n of app.graph._nodes) out[n.id] = [...n.computeSize()].map(Math.ceil);
                return out; }})()""")
    return result


def main(argv=None) -> int:
    paths = (argv if argv else None) or sorted(p for p in glob.glob(os.path.join(ROOT, "workflows", "*.json"))
                                                if not p.endswith(".api.json"))
    sizes = minimum_sizes(paths)
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            original = handle.read()
        workflow = json.loads(original)
        grown = 0
        for node in workflow.get("nodes", []):
            wanted = sizes[path].get(str(node["id"]))
            if not wanted:
                continue
            size = _pair(node.get("size") or [0, 0])
            new = [max(size[0], wanted[0]), max(size[1], wanted[1])]
            if new != size:
                node["size"] = new
                grown += 1
        moved = resolve_overlaps(workflow)
        if grown or moved:
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(dump_like(original, workflow))
        print(f"{os.path.relpath(path, ROOT)}: {grown} node(s) grown to the frontend's minimum, {moved} move(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
