"""Review fixes in validation: odd prompt shapes give ComfyUI-shaped errors, not exceptions."""
import executor_nodes as N
from vibeboard_runner.validation import validate_prompt


def test_non_string_class_type_is_an_invalid_prompt():
    for bad in ([1], {"x": 1}, None):
        result = validate_prompt({"1": {"class_type": bad, "inputs": {}}}, N.registry())
        assert not result.ok and result.error["type"] == "invalid_prompt"
        assert "#1" in result.error["details"]
