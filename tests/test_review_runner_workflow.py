"""Review fixes in workflow loading."""
import json

import executor_nodes as N
from runner.workflow import load_workflow


def test_file_name_starting_with_a_bracket_is_a_path(tmp_path, monkeypatch):
    # `vibeboard run "[draft] shot 1.json"` from the folder holding it
    monkeypatch.chdir(tmp_path)
    (tmp_path / "[draft] shot 1.json").write_text(json.dumps({"1": {"class_type": "Constant", "inputs": {"value": 1}}}))
    assert load_workflow("[draft] shot 1.json", N.registry())["1"]["class_type"] == "Constant"


def test_json_text_still_accepted():
    text = json.dumps({"1": {"class_type": "Constant", "inputs": {"value": 1}}})
    assert load_workflow(text, N.registry())["1"]["inputs"] == {"value": 1}
