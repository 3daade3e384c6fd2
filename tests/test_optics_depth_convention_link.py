"""VBDepthEstimate's convention output must be wireable into the optics consumers' depth_convention combo.

Real ComfyUI 0.3.64 refused the STRING output there ("Return type mismatch between linked nodes:
depth_convention, received_type(STRING) mismatch input_type([...])") and dropped that output; typed as the
combo's option list it validates, the 1.27 frontend connects it (slot type COMBO) and the graph runs.
"""
from vibeboard_runner.registry import NodeRegistry
from vibeboard_runner.validation import validate_prompt


def test_depth_convention_output_links_into_every_consumer():
    reg = NodeRegistry.default()
    estimate = reg.get("VBDepthEstimate")
    for consumer in ("VBDefocusMap", "VBBokehRender", "VBRackFocus"):
        declared = reg.get(consumer).INPUT_TYPES()["required"]["depth_convention"][0]
        assert list(estimate.RETURN_TYPES[1]) == list(declared), consumer
    prompt = {
        "1": {"class_type": "VBSampleRGBDScene", "inputs": {"width": 64, "height": 48, "seed": 0}},
        "2": {"class_type": "VBDepthEstimate", "inputs": {"model": "whatever", "image": ["1", 0],
                                                          "output": "model native", "near": 1.0, "far": 100.0,
                                                          "precision": "auto"}},
        "3": {"class_type": "VBBokehRender", "inputs": {
            "image": ["1", 0], "depth": ["2", 0], "depth_convention": ["2", 1], "focus_mode": "point",
            "focus_x": 0.5, "focus_y": 0.5, "focus_distance": 3.0, "aperture_k": 20.0, "max_coc": 16.0,
            "aperture_shape": "disc", "blades": 6, "rotation": 0.0, "linear_light": True,
            "resize_depth_to_image": False}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "x"}},
    }
    result = validate_prompt(prompt, reg)
    assert "3" not in result.node_errors, result.node_errors.get("3")
    info = reg.node_info("VBDepthEstimate")
    assert info["output"][1] == list(estimate.RETURN_TYPES[1])
