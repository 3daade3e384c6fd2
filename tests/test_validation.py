import pytest

import executor_nodes as N
from vibeboard_runner.validation import validate_prompt


@pytest.fixture
def reg():
    return N.registry()


def errors_of(result, node_id):
    return [e["type"] for e in result.node_errors[node_id]["errors"]]


def test_valid_prompt_casts_constants(reg):
    prompt = {"1": {"class_type": "Choice", "inputs": {"mode": "far", "seed": "5", "strength": 1}},
              "2": {"class_type": "Record", "inputs": {"value": ["1", 0]}}}
    result = validate_prompt(prompt, reg)
    assert result.ok and result.good_outputs == ["2"]
    assert prompt["1"]["inputs"]["seed"] == 5 and isinstance(prompt["1"]["inputs"]["strength"], float)


def test_unknown_class_type(reg):
    result = validate_prompt({"1": {"class_type": "Nope", "inputs": {}}}, reg)
    assert not result.ok
    assert result.error["type"] == "invalid_prompt"
    assert result.error["message"] == "Cannot execute because node Nope does not exist."
    assert result.error["details"] == "Node ID '#1'"


def test_missing_class_type(reg):
    result = validate_prompt({"1": {"inputs": {}}}, reg)
    assert result.error["type"] == "invalid_prompt" and "class_type" in result.error["message"]


def test_no_output_node(reg):
    result = validate_prompt({"1": {"class_type": "Constant", "inputs": {"value": 1}}}, reg)
    assert result.error["type"] == "prompt_no_outputs"


def test_missing_required_input(reg):
    result = validate_prompt({"1": {"class_type": "Add", "inputs": {"a": 1}},
                              "2": {"class_type": "Record", "inputs": {"value": ["1", 0]}}}, reg)
    assert not result.ok and result.error["type"] == "prompt_outputs_failed_validation"
    err = result.node_errors["1"]["errors"][0]
    assert err["type"] == "required_input_missing" and err["extra_info"]["input_name"] == "b"
    assert result.node_errors["1"]["dependent_outputs"] == ["2"]
    assert result.node_errors["1"]["class_type"] == "Add"
    assert "node 1 (Add) input 'b': Required input is missing" in result.summary()


def test_wrong_link_type(reg):
    result = validate_prompt({"1": {"class_type": "MakeImage", "inputs": {"size": 4}},
                              "2": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": 1}},
                              "3": {"class_type": "Record", "inputs": {"value": ["2", 0]}}}, reg)
    err = result.node_errors["2"]["errors"][0]
    assert err["type"] == "return_type_mismatch"
    assert err["details"] == "a, received_type(IMAGE) mismatch input_type(INT)"


def test_min_max_and_combo(reg):
    result = validate_prompt({"1": {"class_type": "Choice", "inputs": {"mode": "middle", "seed": -1, "strength": 2}},
                              "2": {"class_type": "Record", "inputs": {"value": ["1", 0]}}}, reg)
    assert sorted(errors_of(result, "1")) == ["value_bigger_than_max", "value_not_in_list", "value_smaller_than_min"]
    messages = {e["type"]: e for e in result.node_errors["1"]["errors"]}
    assert messages["value_smaller_than_min"]["message"] == "Value -1 smaller than min of 0"
    assert messages["value_bigger_than_max"]["message"] == "Value 2.0 bigger than max of 1.0"
    assert messages["value_not_in_list"]["details"] == "mode: 'middle' not in ['near', 'far']"


def test_invalid_input_type(reg):
    result = validate_prompt({"1": {"class_type": "Constant", "inputs": {"value": "ten"}},
                              "2": {"class_type": "Record", "inputs": {"value": ["1", 0]}}}, reg)
    assert errors_of(result, "1") == ["invalid_input_type"]


def test_link_to_missing_node_and_bad_slot(reg):
    result = validate_prompt({"1": {"class_type": "Constant", "inputs": {"value": 1}},
                              "2": {"class_type": "Add", "inputs": {"a": ["9", 0], "b": ["1", 3]}},
                              "3": {"class_type": "Record", "inputs": {"value": ["2", 0]}}}, reg)
    errs = result.node_errors["2"]["errors"]
    assert [e["type"] for e in errs] == ["bad_linked_input", "bad_linked_input"]
    assert "does not exist" in errs[0]["message"] and "out of range" in errs[1]["message"]


def test_malformed_link(reg):
    result = validate_prompt({"1": {"class_type": "Add", "inputs": {"a": ["1"], "b": 1}},
                              "2": {"class_type": "Record", "inputs": {"value": ["1", 0]}}}, reg)
    assert errors_of(result, "1") == ["bad_linked_input"]


def test_cycle(reg):
    result = validate_prompt({"1": {"class_type": "Add", "inputs": {"a": ["2", 0], "b": 1}},
                              "2": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": 1}},
                              "3": {"class_type": "Record", "inputs": {"value": ["2", 0]}}}, reg)
    assert not result.ok
    assert "dependency_cycle" in errors_of(result, "1") + errors_of(result, "2")


def test_custom_validation(reg):
    result = validate_prompt({"1": {"class_type": "Validated", "inputs": {"value": 3}},
                              "2": {"class_type": "Record", "inputs": {"value": ["1", 0]}}}, reg)
    err = result.node_errors["1"]["errors"][0]
    assert err["type"] == "custom_validation_failed" and "must be even, got 3" in err["details"]


def test_one_good_output_is_enough(reg):
    result = validate_prompt({"1": {"class_type": "Constant", "inputs": {"value": 1}},
                              "2": {"class_type": "Record", "inputs": {"value": ["1", 0]}},
                              "3": {"class_type": "Record", "inputs": {}}}, reg)
    assert result.ok and result.good_outputs == ["2"] and "3" in result.node_errors


def test_value_wrapper_unwrapped(reg):
    prompt = {"1": {"class_type": "Constant", "inputs": {"value": {"__value__": 4}}},
              "2": {"class_type": "Record", "inputs": {"value": ["1", 0]}}}
    assert validate_prompt(prompt, reg).ok and prompt["1"]["inputs"]["value"] == 4
