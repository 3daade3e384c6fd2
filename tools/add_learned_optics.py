"""Append the learned Optics path (GenFocus deblur → bokeh with the Optics Engine defocus map; Learn2Refocus
focal stack) to workflows/optics_engine.json as *muted* nodes, leaving the existing nodes untouched.
Muted nodes are dropped by UI→API conversion, so workflows/optics_engine.api.json stays valid as is.

    python tools/add_learned_optics.py
"""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "custom_nodes"), ROOT]

NEW = {
    "101": {"class_type": "VBDefocusMap", "inputs": {
        "depth": ["1", 1], "depth_convention": "metric (bigger = farther)", "focus_mode": "point", "focus_x": 0.5,
        "focus_y": 0.5, "focus_distance": 3.0, "aperture_k": 20.0, "max_coc": 100.0}},
    "102": {"class_type": "VBGenFocusLoader", "inputs": {
        "flux_folder": "diffusers/FLUX.1-dev", "deblur_lora": "Genfocus/deblurNet.safetensors",
        "bokeh_lora": "Genfocus/bokehNet.safetensors", "dtype": "bf16", "device": "auto"}},
    "103": {"class_type": "VBGenFocusDeblur", "inputs": {"genfocus": ["102", 0], "image": ["1", 0], "steps": 28,
                                                         "guidance": 3.5, "seed": 42, "max_side": 1024}},
    "104": {"class_type": "VBGenFocusBokeh", "inputs": {"genfocus": ["102", 0], "image": ["103", 0],
                                                        "defocus_map": ["101", 0], "steps": 28, "seed": 1234,
                                                        "max_side": 1024}},
    "105": {"class_type": "SaveImage", "inputs": {"images": ["104", 0], "filename_prefix": "vibeboard/optics/genfocus_bokeh"}},
    "106": {"class_type": "VBLearn2RefocusLoader", "inputs": {
        "unet_folder": "diffusers/learn2refocus/checkpoint-200000/unet", "svd_folder": "diffusers/stable-video-diffusion-img2vid",
        "dtype": "fp16", "device": "auto"}},
    "107": {"class_type": "VBLearn2Refocus", "inputs": {"refocus": ["106", 0], "image": ["1", 0], "focal_index": 6,
                                                        "steps": 25, "min_guidance": 1.5, "max_guidance": 1.5,
                                                        "seed": 0, "motion_bucket_id": 0,
                                                        "noise_aug_strength": 0.0}},
    "108": {"class_type": "SaveImage", "inputs": {"images": ["107", 0], "filename_prefix": "vibeboard/optics/focal_stack"}},
}
TITLES = {"101": "Defocus map (for BokehNet)", "102": "GenFocus (needs FLUX.1-dev + LoRAs)",
          "103": "GenFocus Deblur (needs weights)", "104": "GenFocus Bokeh (needs weights)",
          "106": "Learn2Refocus (needs weights)", "107": "Focal stack (needs weights)"}


def main():
    from vibeboard_runner.registry import NodeRegistry
    from vibeboard_runner.ui_export import api_to_ui
    from vibeboard_runner.workflow import load_workflow

    reg = NodeRegistry.default()
    path = os.path.join(ROOT, "workflows", "optics_engine.json")
    ui = json.load(open(path))
    api = json.load(open(os.path.join(ROOT, "workflows", "optics_engine.api.json")))
    if any(str(n["id"]) in NEW for n in ui["nodes"]):
        print("learned path already present")
        return
    full = api_to_ui({**api, **NEW}, reg)
    link_base = ui["last_link_id"]
    by_id = {n["id"]: n for n in ui["nodes"]}
    x0 = max(n["pos"][0] + n["size"][0] for n in ui["nodes"]) + 80
    for node in full["nodes"]:
        if str(node["id"]) not in NEW:
            continue
        node["mode"] = 2
        node["title"] = TITLES.get(str(node["id"]), node.get("title", node["type"]))
        node["pos"] = [x0 + node["pos"][0], node["pos"][1] + 600]
        for inp in node.get("inputs", []):
            if inp.get("link") is not None:
                inp["link"] += link_base
        for out in node.get("outputs", []):
            out["links"] = [l + link_base for l in (out.get("links") or [])] or None
        ui["nodes"].append(node)
    for link in full["links"]:
        if str(link[3]) in NEW:
            new_link = [link[0] + link_base] + link[1:]
            ui["links"].append(new_link)
            src = by_id.get(link[1])
            if src is not None:  # an existing node feeds the learned path
                src["outputs"][link[2]]["links"] = (src["outputs"][link[2]].get("links") or []) + [new_link[0]]
    ui["last_node_id"] = max(n["id"] for n in ui["nodes"])
    ui["last_link_id"] = max(l[0] for l in ui["links"])
    back = load_workflow(ui, reg)
    assert {k: v["inputs"] for k, v in back.items()} == {k: v["inputs"] for k, v in api.items()}, "UI≠API"
    with open(path, "w") as fh:
        json.dump(ui, fh, indent=2)
    print("added the learned Optics path (muted) to workflows/optics_engine.json")


if __name__ == "__main__":
    main()
