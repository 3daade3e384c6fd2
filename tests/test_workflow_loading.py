"""Review fixes in workflow loading."""
import json

import executor_nodes as N
from vibeboard_runner.workflow import load_workflow


def test_file_name_starting_with_a_bracket_is_a_path(tmp_path, monkeypatch):
    # `vibeboard run "[draft] shot 1.json"` from the folder holding it
    monkeypatch.chdir(tmp_path)
    (tmp_path / "[draft] shot 1.json").write_text(json.dumps({"1": {"class_type": "Constant", "inputs": {"value": 1}}}))
    assert load_workflow("[draft] shot 1.json", N.registry())["1"]["class_type"] == "Constant"


def test_json_text_still_accepted():
    text = json.dumps({"1": {"class_type": "Constant", "inputs": {"value": 1}}})
    assert load_workflow(text, N.registry())["1"]["inputs"] == {"value": 1}


def test_png_with_broken_embedded_json_is_a_format_error(tmp_path):
    import pytest
    from PIL import Image, PngImagePlugin
    from vibeboard_runner.workflow import WorkflowFormatError
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", "{not json")
    path = tmp_path / "shot.png"
    Image.new("RGB", (4, 4)).save(path, pnginfo=info)
    with pytest.raises(WorkflowFormatError, match="shot.png"):
        load_workflow(str(path), N.registry())


def test_widgets_saved_by_name_keep_list_values_literal():
    from vibeboard_runner.workflow import ui_to_api
    ui = {"nodes": [{"id": 1, "type": "Constant", "mode": 0, "inputs": [], "outputs": [],
                     "widgets_values": {"value": 3, "extra_list": [1, 2]}}], "links": []}
    inputs = ui_to_api(ui, N.registry())["1"]["inputs"]
    assert inputs["value"] == 3
    assert inputs["extra_list"] == {"__value__": [1, 2]}


def test_malformed_ui_workflow_is_a_format_error():
    import pytest
    from vibeboard_runner.workflow import WorkflowFormatError
    for bad in ({"nodes": [1, 2], "links": []},
                {"nodes": [{"type": "Constant"}], "links": []},
                {"nodes": [{"id": 1, "type": "Constant", "inputs": ["x"]}], "links": []}):
        with pytest.raises(WorkflowFormatError, match="UI workflow"):
            load_workflow(bad, N.registry())


def test_server_answers_400_for_a_malformed_ui_workflow(tmp_path):
    from service_helpers import http, make_server
    server = make_server(tmp_path)
    try:
        status, body, _ = http("POST", server.url + "/prompt", {"prompt": {"nodes": [1], "links": []}})
        assert status == 400, body
        assert body["error"]["type"] == "invalid_workflow"
    finally:
        server.stop_thread()
