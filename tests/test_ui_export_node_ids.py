"""Review fix in API → UI export: node ids that are not numbers must not collide with numeric ones."""
import executor_nodes as N
from vibeboard_runner.ui_export import api_to_ui
from vibeboard_runner.workflow import load_workflow


def test_non_numeric_ids_get_unique_ui_ids():
    reg = N.registry()
    api = {"a": {"class_type": "Constant", "inputs": {"value": 5}},
           "1001": {"class_type": "Constant", "inputs": {"value": 7}},
           "12:5": {"class_type": "Add", "inputs": {"a": ["a", 0], "b": ["1001", 0]}},
           "3": {"class_type": "Record", "inputs": {"value": ["12:5", 0]}}}
    ui = api_to_ui(api, reg)
    ids = [node["id"] for node in ui["nodes"]]
    assert len(ids) == len(set(ids)) == 4
    assert ui["last_node_id"] == max(ids)
    back = load_workflow(ui, reg)
    add = next(node for node in back.values() if node["class_type"] == "Add")
    values = {back[link[0]]["inputs"]["value"] for link in (add["inputs"]["a"], add["inputs"]["b"])}
    assert values == {5, 7}
