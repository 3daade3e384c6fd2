"""Saved UI workflows look right when opened: no two nodes overlap (title bars included), every node has a
saved size, and each module section has a group box (every node inside exactly one group, no two groups
overlapping). The frontend's own minimum sizes are checked in the browser (test_service_frontend_browser.py);
tools/layout_workflows.py fixes all of it from tools/workflow_groups.json."""
import glob
import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from layout_workflows import apply_groups, group_problems, node_box, overlaps, resolve_overlaps  # noqa: E402

UI_FILES = sorted(p for p in glob.glob(os.path.join(ROOT, "workflows", "*.json")) if not p.endswith(".api.json"))


@pytest.mark.parametrize("path", UI_FILES, ids=os.path.basename)
def test_nodes_do_not_overlap(path):
    workflow = json.load(open(path, encoding="utf-8"))
    for node in workflow["nodes"]:
        x0, y0, x1, y1 = node_box(node)
        assert x1 - x0 >= 100 and y1 - y0 >= 50, f"node {node['id']} ({node['type']}) has no real size"
    assert overlaps(workflow) == [], "run tools/layout_workflows.py"


@pytest.mark.parametrize("path", UI_FILES, ids=os.path.basename)
def test_every_node_sits_in_exactly_one_section_group(path):
    workflow = json.load(open(path, encoding="utf-8"))
    titles = [g.get("title") for g in workflow.get("groups") or []]
    assert len(titles) >= 2 and all(titles) and len(set(titles)) == len(titles), titles
    assert group_problems(workflow) == [], "run tools/layout_workflows.py"


def test_group_check_sees_stray_nodes_and_overlapping_groups():
    workflow = {"nodes": [{"id": 1, "pos": [50, 100], "size": [200, 100]},
                          {"id": 2, "pos": [500, 100], "size": [200, 100]}],
                "groups": [{"title": "A", "bounding": [0, 0, 300, 300]},
                           {"title": "B", "bounding": [250, 0, 100, 100]}]}
    problems = group_problems(workflow)
    assert any("node 2" in p and "0 groups" in p for p in problems)
    assert any("'A' and 'B' overlap" in p for p in problems)
    apply_groups(workflow, [[{"title": "A", "nodes": [1]}], [{"title": "B", "nodes": [2]}]])
    assert group_problems(workflow) == [] and overlaps(workflow) == []
    with pytest.raises(ValueError, match="missing"):
        apply_groups(workflow, [[{"title": "A", "nodes": [1]}]])


def test_resolve_overlaps_separates_a_pile():
    pile = {"nodes": [{"id": i, "pos": [10 * i, 5 * i], "size": [200, 100]} for i in range(5)]}
    assert len(overlaps(pile)) == 10
    assert resolve_overlaps(pile) > 0 and overlaps(pile) == []


def test_example_workflows_are_the_module_workflows_with_a_thumbnail():
    """ComfyUI's template convention: example_workflows/<name>.json (UI format, equal to workflows/) + <name>.jpg;
    API twins are not templates. Refresh with tools/make_example_workflows.py."""
    from PIL import Image
    examples = os.path.join(ROOT, "example_workflows")
    names = sorted(os.path.basename(p)[:-5] for p in UI_FILES)
    assert sorted(n[:-5] for n in os.listdir(examples) if n.endswith(".json")) == names
    for name in names:
        with open(os.path.join(examples, name + ".json"), "rb") as a, \
                open(os.path.join(ROOT, "workflows", name + ".json"), "rb") as b:
            assert a.read() == b.read(), f"example_workflows/{name}.json is stale: tools/make_example_workflows.py"
        with Image.open(os.path.join(examples, name + ".jpg")) as thumb:
            assert thumb.format == "JPEG" and thumb.size == (480, 270)
