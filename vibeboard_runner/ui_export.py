"""API prompt → UI-format workflow (schema 0.4), loadable in the ComfyUI frontend.

Used to write each studio module's `workflows/<name>.json` from its API twin, so the two never drift.
Widget values are positional with the UI-only slots the frontend expects (control_after_generate after
seed-like inputs, the upload button value last, after all widgets); nodes are laid out in columns by depth.
"""
from __future__ import annotations

from typing import Dict

from .graph import declared_inputs, input_spec, is_link
from .validation import unwrap
from .workflow import upload_marker, widget_slots

COLUMN_WIDTH, ROW_GAP = 360, 40


def _node_height(n_inputs: int, n_widgets: int) -> int:
    return 46 + 22 * max(n_inputs, 1) + 26 * n_widgets


def api_to_ui(prompt: Dict[str, dict], registry, control_value: str = "fixed") -> dict:
    # Numeric ids are kept; the others ("12:5", "loader") get fresh numbers above every numeric id.
    ids = {}
    for node_id in prompt:
        if str(node_id).isdecimal() and int(node_id) not in ids.values():  # "7" and "007" can't both be 7
            ids[node_id] = int(node_id)
    next_id = max(ids.values(), default=0) + 1
    for node_id in prompt:
        if node_id not in ids:
            ids[node_id] = next_id
            next_id += 1
    depth = {}

    def column(node_id, seen=()):
        if node_id in depth:
            return depth[node_id]
        sources = [v[0] for v in prompt[node_id].get("inputs", {}).values() if is_link(v) and v[0] in prompt
                   and v[0] not in seen]
        depth[node_id] = 1 + max((column(s, seen + (node_id,)) for s in sources), default=-1)
        return depth[node_id]

    for node_id in prompt:
        column(node_id)
    nodes, links = [], []
    outputs_links: Dict[tuple, list] = {}
    next_y: Dict[int, int] = {}
    for order, node_id in enumerate(sorted(prompt, key=lambda n: (depth[n], ids[n]))):
        node = prompt[node_id]
        node_class = registry.get(node["class_type"])
        types = node_class.INPUT_TYPES()
        slots = widget_slots(types)
        widget_names = {name for name, kind in slots if kind == "value"}
        inputs_ui, values = [], []
        for name, (kind, _opts, _section) in declared_inputs(node_class).items():
            type_name = "COMBO" if isinstance(kind, (list, tuple)) else kind
            value = node["inputs"].get(name)
            entry = {"name": name, "type": type_name, "link": None}
            if name in widget_names:
                entry["widget"] = {"name": name}
            if is_link(value):
                link_id = len(links) + 1
                entry["link"] = link_id
                links.append([link_id, ids[value[0]], value[1], ids[node_id], len(inputs_ui), type_name])
                outputs_links.setdefault((value[0], value[1]), []).append(link_id)
            if name in widget_names or entry["link"] is not None:
                inputs_ui.append(entry)
        for name, kind in slots:
            value = node["inputs"].get(name)
            if kind == "value":
                if is_link(value) or value is None:
                    value = _default(node_class, name)
                values.append(unwrap(value))
            elif kind == "control":
                values.append(control_value)
            else:
                values.append(upload_marker(name))
        col = depth[node_id]
        y = next_y.get(col, 40)
        height = _node_height(len([i for i in inputs_ui if "widget" not in i]), len(values))
        next_y[col] = y + height + ROW_GAP
        ui = {"id": ids[node_id], "type": node["class_type"], "pos": [40 + col * COLUMN_WIDTH, y],
              "size": [320, height], "flags": {}, "order": order, "mode": 0, "inputs": inputs_ui,
              "outputs": [], "properties": {"Node name for S&R": node["class_type"], "cnr_id": "vibeboard"},
              "widgets_values": values}
        title = (node.get("_meta") or {}).get("title")
        if title and title != registry.display_name(node["class_type"]):
            ui["title"] = title
        nodes.append(ui)
    by_id = {n["id"]: n for n in nodes}
    for node_id, node in prompt.items():
        node_class = registry.get(node["class_type"])
        names = getattr(node_class, "RETURN_NAMES", None) or node_class.RETURN_TYPES
        by_id[ids[node_id]]["outputs"] = [
            {"name": names[i], "type": kind if isinstance(kind, str) else "COMBO",
             "links": outputs_links.get((node_id, i), []), "slot_index": i}
            for i, kind in enumerate(node_class.RETURN_TYPES)]
    return {"id": "00000000-0000-4000-8000-000000000000", "revision": 0,
            "last_node_id": max(ids.values(), default=0), "last_link_id": len(links),
            "nodes": nodes, "links": links, "groups": [], "config": {},
            "extra": {"ds": {"scale": 1, "offset": [0, 0]}}, "version": 0.4}


def _default(node_class, name):
    kind, opts, _ = input_spec(node_class, name)
    if "default" in opts:
        return opts["default"]
    if isinstance(kind, (list, tuple)):
        return kind[0] if kind else ""
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}.get(kind, None)
