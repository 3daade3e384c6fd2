#!/usr/bin/env python3
"""Make the saved UI workflows look right in ComfyUI's editor: every node at least the size the frontend computes
for it (its widgets and slots), no node overlapping another once loaded, and a group box per module section.

    python3 tools/layout_workflows.py [workflows/x.json …]     # default: every workflows/*.json UI file
    python3 tools/layout_workflows.py --no-browser [...]        # groups and overlaps only (sizes as saved)

It opens each workflow in the real frontend (comfyui-frontend-package, headless Chromium, on `vibeboard serve`),
reads each node's computed minimum size, writes `size = max(saved, minimum)`. A workflow with sections in
tools/workflow_groups.json is then packed group by group (columns of groups left to right, each group's nodes
keeping their own columns and order) and gets one group box per section; any other workflow has overlapping
nodes moved down their column. Only `size`, `pos` and `groups` change, so the API twins stay equal. Re-run it
after editing a workflow, then tools/make_example_workflows.py.
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
GROUPS_FILE = os.path.join(ROOT, "tools", "workflow_groups.json")
GROUP_FONT = 24
GROUP_TITLE = 40  # the group's title band (font_size × 1.4 in LiteGraph) plus a little air
GROUP_PAD = 20  # inside a group box, around its nodes
GROUP_GAP = 60  # between group boxes
COLUMN_GAP = 40  # between node columns inside a group
# LiteGraph's palette (LGraphCanvas.node_colors): pale blue for working sections, yellow for ones that need
# something the user must add first (weights, keys, servers), so a newcomer sees at once what is muted and why.
GROUP_COLOR, ATTENTION_COLOR = "#3f789e", "#b58b2a"


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


def group_box(group) -> tuple:
    x, y, w, h = group["bounding"]
    return x, y, x + w, y + h


def group_problems(workflow: dict) -> list:
    """What is wrong with the group boxes: nodes in no group or in several, overlapping groups."""
    groups = workflow.get("groups") or []
    problems = []
    for node in workflow.get("nodes", []):
        nx0, ny0, nx1, ny1 = node_box(node)
        inside = [g.get("title") for g in groups
                  if (lambda b: b[0] <= nx0 and b[1] + GROUP_TITLE <= ny0 and nx1 <= b[2] and ny1 <= b[3])(
                      group_box(g))]
        if len(inside) != 1:
            problems.append(f"node {node['id']} ({node.get('type')}) is inside {len(inside)} groups {inside}")
    for index, a in enumerate(groups):
        for b in groups[index + 1:]:
            ax0, ay0, ax1, ay1 = group_box(a)
            bx0, by0, bx1, by1 = group_box(b)
            if ax0 < bx1 and bx0 < ax1 and ay0 < by1 and by0 < ay1:
                problems.append(f"groups {a.get('title')!r} and {b.get('title')!r} overlap")
    return problems


def _pack_group(nodes: list, x0: float, y0: float) -> tuple:
    """Place one group's nodes from (x0, y0) (top-left of the group's inside): nodes that shared an x stay one
    column, columns keep their left-to-right order and each column its top-to-bottom order. Returns the
    (width, height) used."""
    columns: dict = {}
    for node in nodes:
        columns.setdefault(_pair(node["pos"])[0], []).append(node)
    x, bottom = x0, y0
    for key in sorted(columns):
        column = sorted(columns[key], key=lambda n: (_pair(n["pos"])[1], str(n["id"])))
        y, width = y0, 0
        for node in column:
            size = _pair(node.get("size") or [0, 0])
            node["pos"] = [x, y + TITLE_HEIGHT]
            y += TITLE_HEIGHT + size[1] + GAP
            width = max(width, size[0])
        bottom = max(bottom, y - GAP)
        x += width + COLUMN_GAP
    return x - COLUMN_GAP - x0, bottom - y0


def apply_groups(workflow: dict, columns: list, origin=(0, 0)) -> None:
    """Pack the workflow section by section and draw one group box per section (replacing any saved groups)."""
    nodes = {n["id"]: n for n in workflow.get("nodes", [])}
    listed = [i for column in columns for section in column for i in section["nodes"]]
    missing = sorted(set(nodes) - set(listed), key=str)
    unknown = sorted(set(listed) - set(nodes), key=str)
    if missing or unknown or len(listed) != len(set(listed)):
        raise ValueError(f"sections must list every node once: missing {missing}, unknown {unknown}")
    groups, x = [], origin[0]
    for column in columns:
        y, column_width = origin[1], 0
        for section in column:
            inner_x, inner_y = x + GROUP_PAD, y + GROUP_TITLE + GROUP_PAD
            width, height = _pack_group([nodes[i] for i in section["nodes"]], inner_x, inner_y)
            box_w = max(width + 2 * GROUP_PAD, 14 * len(section["title"]) + 2 * GROUP_PAD)  # title fits
            box_h = height + GROUP_TITLE + 2 * GROUP_PAD
            needs = any(word in section["title"].lower() for word in ("muted", "needs", "read first"))
            groups.append({"id": len(groups) + 1, "title": section["title"], "bounding": [x, y, box_w, box_h],
                           "color": ATTENTION_COLOR if needs else GROUP_COLOR, "font_size": GROUP_FONT,
                           "flags": {}})
            y += box_h + GROUP_GAP
            column_width = max(column_width, box_w)
        x += column_width + GROUP_GAP
    workflow["groups"] = groups


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
    from chromium_page import Browser
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
    argv = list(argv or [])
    use_browser = "--no-browser" not in argv
    argv = [a for a in argv if a != "--no-browser"]
    paths = argv or sorted(p for p in glob.glob(os.path.join(ROOT, "workflows", "*.json"))
                           if not p.endswith(".api.json"))
    sizes = minimum_sizes(paths) if use_browser else {path: {} for path in paths}
    with open(GROUPS_FILE, encoding="utf-8") as handle:
        sections = json.load(handle)
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
        name = os.path.basename(path)[:-len(".json")]
        if name in sections:
            apply_groups(workflow, sections[name])
            moved = len(workflow["groups"])
            what = f"{moved} group(s)"
        else:
            moved = resolve_overlaps(workflow)
            what = f"{moved} move(s)"
        text = dump_like(original, workflow)
        if text != original:
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(text)
        print(f"{os.path.relpath(path, ROOT)}: {grown} node(s) grown to the frontend's minimum, {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
