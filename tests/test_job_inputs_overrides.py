"""Review fix: a list given as an override value is a literal, not a malformed link."""
import executor_nodes as N
from vibeboard_runner.job_inputs import apply_job_inputs
from vibeboard_runner.validation import validate_prompt
from vibeboard_runner.workflow import apply_overrides


class TakesList:
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "test"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"sizes": ("LIST", {})}}

    def run(self, sizes):
        return {"ui": {"text": [str(sizes)]}, "result": (len(sizes),)}


def _registry():
    reg = N.registry()
    reg.register("TakesList", TakesList)
    return reg


def test_cli_override_with_a_list_value_is_a_literal():
    prompt = {"1": {"class_type": "TakesList", "inputs": {"sizes": {"__value__": [1]}}}}
    changed = apply_overrides(prompt, {"1.sizes": [512, 768]})
    assert validate_prompt(changed, _registry()).ok
    assert changed["1"]["inputs"]["sizes"] == {"__value__": [512, 768]}


def test_cli_override_can_still_set_a_link():
    prompt = {"1": {"class_type": "Constant", "inputs": {"value": 1}},
              "2": {"class_type": "Record", "inputs": {"value": 3}}}
    assert apply_overrides(prompt, {"2.value": ["1", 0]})["2"]["inputs"]["value"] == ["1", 0]


def test_job_input_with_a_list_value_is_a_literal(tmp_path):
    prompt = {"1": {"class_type": "TakesList", "inputs": {"sizes": {"__value__": [1]}}}}
    apply_job_inputs(prompt, {"1.sizes": [1, 2, 3]}, str(tmp_path), "job")
    assert validate_prompt(prompt, _registry()).ok


def test_override_of_a_node_whose_id_contains_a_dot(tmp_path):
    # Input names are identifiers; node ids are any string ("shot.1"): split at the last dot.
    prompt = {"shot.1": {"class_type": "Constant", "inputs": {"value": 1}}}
    assert apply_overrides(prompt, {"shot.1.value": 5})["shot.1"]["inputs"]["value"] == 5
    apply_job_inputs(prompt, {"shot.1.value": 6}, str(tmp_path), "job")
    assert prompt["shot.1"]["inputs"]["value"] == 6
