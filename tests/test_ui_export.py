import executor_nodes as N
from vibeboard_runner.ui_export import api_to_ui
from vibeboard_runner.workflow import load_workflow


def test_round_trip_api_ui_api():
    reg = N.registry()
    api = {"1": {"class_type": "MakeImage", "inputs": {"size": 8}},
           "2": {"class_type": "Choice", "inputs": {"mode": "far", "seed": 42, "strength": 0.25, "image": ["1", 0]}},
           "3": {"class_type": "Record", "inputs": {"value": ["2", 0]}}}
    ui = api_to_ui(api, reg)
    choice = next(n for n in ui["nodes"] if n["type"] == "Choice")
    assert choice["widgets_values"] == ["far", 42, "fixed", 0.25]
    assert ui["links"][0][1:] == [1, 0, 2, 0, "IMAGE"] or any(l[1] == 1 and l[3] == 2 for l in ui["links"])
    back = load_workflow(ui, reg)
    assert {k: v["inputs"] for k, v in back.items()} == {k: v["inputs"] for k, v in api.items()}
