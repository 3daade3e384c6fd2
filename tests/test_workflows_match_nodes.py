"""The saved UI workflows match the nodes as they are now, the way the ComfyUI frontend lays them out.

A node that gained an input after its workflow was saved keeps the old, shorter `widgets_values`: the
frontend then fills the missing trailing widget with its default, and an input inserted in the middle would
shift every later value (seen: shot_studio.json's VBWanSamplerSettings after `compile` was added). The
layout rule (widget_slots) was checked against the real frontend, 1.27.10, for every VB node.
"""
import glob
import json
import os

import pytest

from vibeboard_runner.registry import NodeRegistry
from vibeboard_runner.workflow import VIRTUAL_NODES, is_ui_format, load_workflow, widget_slots

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UI_FILES = [p for p in sorted(glob.glob(os.path.join(ROOT, "workflows", "*.json")))
            if not p.endswith(".api.json") and is_ui_format(json.load(open(p)))]


@pytest.mark.parametrize("path", UI_FILES, ids=os.path.basename)
def test_widgets_values_have_the_current_layout(path):
    reg = NodeRegistry.default()
    stale = []
    for node in json.load(open(path))["nodes"]:
        node_class = reg.get(node["type"])
        if node["type"] in VIRTUAL_NODES or node_class is None:
            continue
        want = len(widget_slots(node_class.INPUT_TYPES()))
        have = len(node.get("widgets_values") or [])
        if have != want:
            stale.append(f"node {node['id']} {node['type']}: {have} widgets_values, the node now has {want}")
    assert not stale, "\n".join(stale)


@pytest.mark.parametrize("path", UI_FILES, ids=os.path.basename)
def test_ui_file_equals_its_api_twin(path):
    twin = path[:-len(".json")] + ".api.json"
    if not os.path.exists(twin):
        pytest.skip("no API twin")
    reg = NodeRegistry.default()
    from_ui = load_workflow(path, reg)
    api = json.load(open(twin))
    assert set(from_ui) == set(api)
    for node_id, node in api.items():
        assert from_ui[node_id]["class_type"] == node["class_type"], node_id
        assert from_ui[node_id]["inputs"] == node["inputs"], node_id
