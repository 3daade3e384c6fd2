"""Writes workflows/stagecraft(.api).json: the API graph by hand (runs headless, no weights, on the shipped
blocking document), the UI twin by vibeboard_runner.ui_export plus the muted nodes that need a running engine or weights;
checks that the UI file converts back to the API twin.

    python tools/make_stagecraft.py
"""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "custom_nodes"), ROOT]
os.chdir(ROOT)

from vibeboard_runner.registry import NodeRegistry  # noqa: E402
from vibeboard_runner.ui_export import api_to_ui  # noqa: E402
from vibeboard_runner.workflow import load_workflow  # noqa: E402

API = {
    "1": {"class_type": "VBBlockingLoad", "inputs": {"blocking": "sample:stagecraft_blocking.json"}},
    "2": {"class_type": "VBBlockingDiagram", "inputs": {"blocking": ["1", 0], "frame": 24, "size": 512,
                                                        "save_svg": True}},
    "3": {"class_type": "VBContinuityCheck", "inputs": {"blocking": ["1", 0]}},
    "4": {"class_type": "VBPrevizAnimatic", "inputs": {"blocking": ["1", 0], "width": 0, "height": 0,
                                                       "filename_prefix": "vibeboard/stagecraft/animatic",
                                                       "set_glb": ""}},
    "5": {"class_type": "VBBlockingToCameraPath", "inputs": {"blocking": ["1", 0], "shot": "1", "relative": False}},
    "6": {"class_type": "VBBlockingToBoxes", "inputs": {"blocking": ["1", 0], "shot": "1"}},
    "7": {"class_type": "VBCustomXConditioning", "inputs": {"blocking": ["1", 0], "shot": "2", "character": "alice"}},
    "8": {"class_type": "SaveImage", "inputs": {"images": ["7", 0], "filename_prefix": "vibeboard/stagecraft/customx_scene"}},
}
# nodes that need something the CI machine has not got: (type, widgets, title)
MUTED = [
    ("VBUnrealApplyBeat", {"frame": 24, "host": "127.0.0.1", "port": 30010, "allow_lan": False,
                           "actor_paths": "{}", "camera_paths": "{}", "camera_components": "{}"},
     "Unreal Apply Beat (needs a running Unreal Editor with Remote Control: unmute)"),
    ("VBNitroGenActions", {"host": "127.0.0.1", "port": 5555, "token": "", "allow_menu": False},
     "NitroGen Actions (needs a NitroGen server with ng.pt: unmute)"),
]


def main():
    reg = NodeRegistry.default()
    ui = api_to_ui(API, reg)
    nid = max(n["id"] for n in ui["nodes"]) + 1
    for node_type, widgets, title in MUTED:
        if node_type not in reg:
            continue
        extra = api_to_ui({"1": {"class_type": node_type, "inputs": widgets or {}}}, reg)["nodes"][0]
        extra.update({"id": nid, "mode": 2, "title": title, "pos": [40 + 360 * (nid % 3), 900]})
        for inp in extra.get("inputs", []):
            inp["link"] = None
        for out in extra.get("outputs", []):
            out["links"] = []
        ui["nodes"].append(extra)
        nid += 1
    ui["last_node_id"] = nid - 1
    converted = load_workflow(ui, reg)
    assert {k: v["inputs"] for k, v in converted.items()} == {k: v["inputs"] for k, v in API.items()}
    json.dump(API, open("workflows/stagecraft.api.json", "w"), indent=1)
    json.dump(ui, open("workflows/stagecraft.json", "w"), indent=1)
    print("wrote workflows/stagecraft.json and .api.json")


if __name__ == "__main__":
    main()
