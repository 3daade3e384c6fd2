import json
import os

import pytest

import executor_nodes as N
from vibeboard_runner.executor import Executor
from vibeboard_runner.registry import NodeRegistry
from vibeboard_runner.workflow import WorkflowFormatError, apply_overrides, load_workflow, widget_slots

DATA = os.path.join(os.path.dirname(__file__), "data")


def test_ui_to_api_real_workflow():
    prompt = load_workflow(os.path.join(DATA, "ui_workflow.json"), N.registry())
    stripped = {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in prompt.items()}
    assert stripped == {
        "1": {"class_type": "MakeImage", "inputs": {"size": 8}},
        # seed's control_after_generate slot skipped; strength comes from the PrimitiveNode; image via Reroute
        "3": {"class_type": "Choice", "inputs": {"mode": "far", "seed": 42, "strength": 0.75, "image": ["1", 0]}},
        "4": {"class_type": "Record", "inputs": {"value": ["3", 0]}},
        "5": {"class_type": "Constant", "inputs": {"value": 3}},
        "9": {"class_type": "Record", "inputs": {"value": ["5", 0]}},  # through the bypassed Add
    }
    assert prompt["3"]["_meta"] == {"title": "Choice"}


def test_converted_workflow_runs(tmp_path):
    N.CALLS.clear()
    prompt = load_workflow(os.path.join(DATA, "ui_workflow.json"), N.registry())
    result = Executor(N.registry(), output_dir=tmp_path).execute(prompt)
    assert result.status == "success"
    assert result.outputs == {"4": {"text": ["'far:42:0.75'"]}, "9": {"text": ["3"]}}


def test_object_links_schema_1():
    data = json.load(open(os.path.join(DATA, "ui_workflow.json")))
    data["links"] = [dict(zip(["id", "origin_id", "origin_slot", "target_id", "target_slot", "type"], link))
                     for link in data["links"]]
    data["version"] = 1
    prompt = load_workflow(data, N.registry())
    assert prompt["3"]["inputs"]["image"] == ["1", 0]


def test_widget_slots_include_ui_only_values():
    reg = NodeRegistry.default(embedded=True)
    assert widget_slots(reg.get("LoadImage").INPUT_TYPES()) == [("image", "value"), ("image", "upload")]
    assert widget_slots(N.Choice.INPUT_TYPES()) == [("mode", "value"), ("seed", "value"), ("seed", "control"),
                                                    ("strength", "value")]


def test_load_image_widgets_values():
    reg = NodeRegistry.default(embedded=True)
    ui = {"nodes": [{"id": 7, "type": "LoadImage", "mode": 0, "inputs": [],
                     "outputs": [], "widgets_values": ["example.png", "image"]}], "links": []}
    assert load_workflow(ui, reg)["7"]["inputs"] == {"image": "example.png"}


def test_old_save_without_control_slot():
    ui = {"nodes": [{"id": 1, "type": "Choice", "mode": 0, "inputs": [], "outputs": [],
                     "widgets_values": ["near", 7, 0.5]}], "links": []}
    assert load_workflow(ui, N.registry())["1"]["inputs"] == {"mode": "near", "seed": 7, "strength": 0.5}


def test_api_format_and_prompt_body_and_text():
    api = {"1": {"class_type": "Constant", "inputs": {"value": 1}},
           "2": {"class_type": "Record", "inputs": {"value": [1, 0]}}}
    assert load_workflow(api, N.registry())["2"]["inputs"]["value"] == ["1", 0]
    assert load_workflow({"prompt": api, "client_id": "x"}, N.registry())["1"]["class_type"] == "Constant"
    assert load_workflow(json.dumps(api), N.registry())["1"]["inputs"] == {"value": 1}


@pytest.mark.parametrize("text,needle", [("{not json", "invalid JSON"), ("[1, 2]", "not a ComfyUI workflow"),
                                         ("{}", "not a ComfyUI workflow")])
def test_bad_files(text, needle):
    with pytest.raises(WorkflowFormatError, match=needle):
        load_workflow(text, N.registry())


def test_subgraphs_refused_clearly():
    with pytest.raises(WorkflowFormatError, match="subgraphs"):
        load_workflow({"nodes": [], "links": [], "definitions": {"subgraphs": [{"id": "x"}]}}, N.registry())


def test_overrides():
    api = {"1": {"class_type": "Constant", "inputs": {"value": 1}}}
    assert apply_overrides(api, {"1.value": 5})["1"]["inputs"]["value"] == 5
    assert api["1"]["inputs"]["value"] == 1
    with pytest.raises(WorkflowFormatError, match="NODE_ID.input"):
        apply_overrides(api, {"9.value": 5})
