"""The embedded SaveImage / PreviewImage / LoadImage twins declare what ComfyUI declares (recorded in
tests/data/comfyui_core_io_signatures.json): the current release's IMAGE pass-through output included, so a
graph wired from it runs headless; a workflow from 0.3.64 (no such output) still loads; a wire the runner
cannot follow is an error that names the node, never a silently dropped branch."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from vibeboard.common import runtime
from vibeboard_runner import core_nodes
from vibeboard_runner.executor import Executor
from vibeboard_runner.registry import NodeRegistry
from vibeboard_runner.validation import validate_prompt
from vibeboard_runner.workflow import WorkflowFormatError, load_workflow

SIGNATURES = json.load(open(os.path.join(os.path.dirname(__file__), "data", "comfyui_core_io_signatures.json")))


def _signature(cls):
    types = cls.INPUT_TYPES()
    required = {}
    for name, spec in types.get("required", {}).items():
        kind = "COMBO" if isinstance(spec[0], (list, tuple)) else spec[0]
        opts = {k: v for k, v in (spec[1] if len(spec) > 1 else {}).items() if k != "tooltip"}
        required[name] = [kind, opts]
    return {"required": required, "hidden": dict(types.get("hidden", {})),
            "return_types": list(cls.RETURN_TYPES),
            "return_names": list(cls.RETURN_NAMES) if getattr(cls, "RETURN_NAMES", None) else None,
            "output_node": bool(getattr(cls, "OUTPUT_NODE", False)), "category": cls.CATEGORY,
            "function": cls.FUNCTION}


@pytest.mark.parametrize("name", ["LoadImage", "SaveImage", "PreviewImage"])
def test_twin_matches_current_comfyui(name):
    recorded = SIGNATURES["releases"]["current"]["nodes"][name]
    ours = _signature(core_nodes.NODE_CLASS_MAPPINGS[name])
    assert ours == recorded
    assert list(ours["required"]) == list(recorded["required"])  # widget order is positional in UI files


@pytest.mark.parametrize("name", ["LoadImage", "SaveImage", "PreviewImage"])
def test_twin_still_runs_what_0_3_64_saved(name):
    old = SIGNATURES["releases"]["0.3.64"]["nodes"][name]
    ours = _signature(core_nodes.NODE_CLASS_MAPPINGS[name])
    assert ours["required"] == old["required"] and ours["hidden"] == old["hidden"]
    assert ours["return_types"][:len(old["return_types"])] == old["return_types"]  # outputs only added


@pytest.fixture
def folders(tmp_path, monkeypatch):
    dirs = {k: str(tmp_path / k) for k in ("output", "input", "temp", "models")}
    for path in dirs.values():
        os.makedirs(path)
    monkeypatch.setattr(runtime, "_dirs", dict(dirs))
    Image.fromarray(np.full((6, 8, 3), 200, np.uint8)).save(os.path.join(dirs["input"], "plate.png"))
    return dirs


def _ui_chain(save_outputs=True, link_table=True):
    """LoadImage → SaveImage → (SaveImage.images) → PreviewImage, as the current frontend saves it."""
    save = {"id": 2, "type": "SaveImage", "mode": 0, "inputs": [{"name": "images", "type": "IMAGE", "link": 1}],
            "outputs": [{"name": "images", "type": "IMAGE", "links": [2]}] if save_outputs else [],
            "widgets_values": ["chain"]}
    nodes = [{"id": 1, "type": "LoadImage", "mode": 0, "inputs": [],
              "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [1]}, {"name": "MASK", "type": "MASK"}],
              "widgets_values": ["plate.png", "image"]},
             save,
             {"id": 3, "type": "PreviewImage", "mode": 0,
              "inputs": [{"name": "images", "type": "IMAGE", "link": 2}], "outputs": [], "widgets_values": []}]
    links = [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 3, 0, "IMAGE"]]
    return {"nodes": nodes, "links": links if link_table else links[:1], "version": 0.4}


def test_chain_from_save_image_output_runs(folders):
    registry = NodeRegistry.default(embedded=True)
    prompt = load_workflow(_ui_chain(), registry)
    assert prompt["3"]["inputs"]["images"] == ["2", 0]
    result = Executor(registry, output_dir=folders["output"], input_dir=folders["input"],
                      temp_dir=folders["temp"]).execute(prompt)
    assert result.status == "success", result
    assert result.outputs["2"]["images"][0]["type"] == "output"
    assert result.outputs["3"]["images"][0]["type"] == "temp"
    saved = Image.open(os.path.join(folders["temp"], result.outputs["3"]["images"][0]["filename"]))
    assert saved.size == (8, 6)  # the preview got the images through SaveImage's output


def test_wire_from_an_output_the_node_lacks_is_an_error_naming_the_node():
    registry = NodeRegistry.default(embedded=True)

    class OldSaveImage(core_nodes.SaveImage):  # 0.3.64's declaration: no outputs
        RETURN_TYPES = ()
        RETURN_NAMES = None
        OUTPUT_TOOLTIPS = ()

    registry.register("SaveImage", OldSaveImage)
    prompt = load_workflow(_ui_chain(), registry)
    result = validate_prompt(prompt, registry)
    assert not result.ok
    assert result.node_errors["3"]["class_type"] == "PreviewImage"
    assert "out of range" in json.dumps(result.node_errors["3"]["errors"])
    assert "node 3 (PreviewImage) input 'images'" in result.summary()


def test_wire_through_a_missing_link_is_an_error_naming_the_node():
    with pytest.raises(WorkflowFormatError, match=r"node 3 \(PreviewImage\) input 'images'.*link 2"):
        load_workflow(_ui_chain(link_table=False), NodeRegistry.default(embedded=True))
