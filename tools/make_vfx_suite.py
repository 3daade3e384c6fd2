"""Regenerate workflows/vfx_suite.json (UI) and workflows/vfx_suite.api.json (API twin).

The API twin is the part that runs headless with no weights (training-free camera preview, path export,
focus inspection on a synthetic RGB-D scene). The UI workflow also carries the weight-needing nodes
(InfCam Change Camera, Fix Focus via GenFocus, Edit Shirt via Qwen-Image-Edit) *muted*: un-mute them in
ComfyUI once the weights are in the models folder. Muted nodes are dropped by UI→API conversion, so the
UI file converts exactly to the API twin.

    python tools/make_vfx_suite.py
"""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "custom_nodes"), ROOT]

from vibeboard.vfx.infcam_conditioning import DEFAULT_NEGATIVE as INFCAM_NEGATIVE  # noqa: E402

RUNNABLE = {
    "1": {"class_type": "VBSampleRGBDScene", "inputs": {"width": 320, "height": 192, "seed": 0}},
    "2": {"class_type": "VBCameraPreset", "inputs": {"motion": "pan_right", "num_frames": 33, "width": 320,
                                                     "height": 192, "fov_deg": 60.0, "speed": 0.5,
                                                     "easing": "ease_in_out", "subject_distance": 1.0, "shake": 0.3,
                                                     "seed": 7}},
    "3": {"class_type": "VBCameraPathDraw", "inputs": {
        "points": json.dumps({"points": [[0.5, 0.5], [0.56, 0.47], [0.62, 0.45]]}), "mode": "pan_tilt",
        "num_frames": 33, "width": 320, "height": 192, "fov_deg": 60.0, "easing": "ease_in_out",
        "subject_distance": 1.0, "image": ["1", 0]}},
    "4": {"class_type": "VBRotationPreview", "inputs": {"source_video": ["1", 0], "camera_path": ["2", 0],
                                                        "source": "first_frame", "num_frames": 33}},
    "5": {"class_type": "VBSaveVideo", "inputs": {"images": ["4", 0], "fps": 16.0,
                                                  "filename_prefix": "vibeboard/vfx/camera_preview", "crf": 19,
                                                  "preset": "medium"}},
    "6": {"class_type": "VBCameraPathExport", "inputs": {"camera_path": ["2", 0], "format": "realestate10k",
                                                         "filename_prefix": "vibeboard/vfx/camera_path"}},
    "7": {"class_type": "VBRotationPreview", "inputs": {"source_video": ["1", 0], "camera_path": ["3", 0],
                                                        "source": "first_frame", "num_frames": 33}},
    "8": {"class_type": "VBSaveVideo", "inputs": {"images": ["7", 0], "fps": 16.0,
                                                  "filename_prefix": "vibeboard/vfx/drawn_path_preview", "crf": 19,
                                                  "preset": "medium"}},
    "9": {"class_type": "VBFocusInspect", "inputs": {"images": ["1", 0], "shot_name": "vfx_sample", "tile": 32,
                                                     "soft_px": 2.0, "save_report": True, "depth": ["1", 1],
                                                     "depth_convention": "metric"}},
}
NEEDS_WEIGHTS = {
    "20": {"class_type": "VBInfCamLoader", "inputs": {
        "checkpoint": "InfCam/step35000.safetensors", "vae": "vae/wan_2.1_vae.safetensors",
        "text_encoder": "text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors",
        "tokenizer": "text_encoders/umt5-xxl-tokenizer", "dtype": "bf16", "device": "auto",
        "base_transformer": "", "attention_head_dim": 128}},
    "29": {"class_type": "VBWanTextEncode", "inputs": {
        "wan": ["20", 0], "prompt": "a quiet room, soft daylight", "negative_prompt": INFCAM_NEGATIVE}},
    "21": {"class_type": "VBChangeCamera", "inputs": {
        "infcam": ["20", 0], "text": ["29", 0], "source_video": ["4", 0], "camera_path": ["2", 0],
        "zoom_factor": 1.0, "translation_scale": 1.0}},
    "22": {"class_type": "VBSaveVideo", "inputs": {"images": ["21", 0], "fps": 16.0,
                                                   "filename_prefix": "vibeboard/vfx/change_camera", "crf": 19,
                                                   "preset": "medium"}},
    "23": {"class_type": "VBGenFocusLoader", "inputs": {
        "flux_folder": "diffusers/FLUX.1-dev", "deblur_lora": "Genfocus/deblurNet.safetensors",
        "bokeh_lora": "Genfocus/bokehNet.safetensors", "dtype": "bf16", "device": "auto"}},
    "24": {"class_type": "VBFixFocus", "inputs": {"genfocus": ["23", 0], "image": ["1", 0], "steps": 28,
                                                  "seed": 42, "max_side": 1024}},
    "25": {"class_type": "SaveImage", "inputs": {"images": ["24", 0], "filename_prefix": "vibeboard/vfx/fixed_focus"}},
    "26": {"class_type": "VBQwenEditLoader", "inputs": {
        "folder": "diffusers/Qwen-Image-Edit-2509", "transformer_file": "", "vae_file": "", "dtype": "bf16",
        "device": "auto", "variant": "auto"}},
    "27": {"class_type": "VBQwenEdit", "inputs": {
        "qwen_edit": ["26", 0], "image": ["1", 0], "instruction": "Change the shirt to a red flannel shirt.",
        "steps": 40, "true_cfg": 4.0, "seed": 0, "negative_prompt": " ", "feather_px": 4.0,
        "megapixels": 1.0}},
    "28": {"class_type": "SaveImage", "inputs": {"images": ["27", 0], "filename_prefix": "vibeboard/vfx/edit_shirt"}},
}
TITLES = {"1": "Source frame (synthetic RGB-D sample)", "2": "Camera move", "3": "Camera path drawn over the frame",
          "4": "Rotation preview (training-free)", "7": "Drawn-path preview", "9": "Focus inspection → Dailies",
          "20": "InfCam (needs weights)", "29": "InfCam prompt (needs weights)",
          "21": "Change Camera (needs weights)",
          "23": "GenFocus (needs weights)", "24": "Fix Focus (needs weights)",
          "26": "Qwen-Image-Edit (needs weights)", "27": "Edit Shirt (needs weights)"}


def main():
    from vibeboard_runner.registry import NodeRegistry
    from vibeboard_runner.ui_export import api_to_ui
    from vibeboard_runner.workflow import load_workflow

    reg = NodeRegistry.default()
    ui = api_to_ui({**RUNNABLE, **NEEDS_WEIGHTS}, reg)
    for node in ui["nodes"]:
        key = str(node["id"])
        if key in NEEDS_WEIGHTS:
            node["mode"] = 2  # muted until the weights are installed
        if key in TITLES:
            node["title"] = TITLES[key]
    back = load_workflow(ui, reg)
    assert {k: v["inputs"] for k, v in back.items()} == {k: v["inputs"] for k, v in RUNNABLE.items()}, "UI≠API"
    with open(os.path.join(ROOT, "workflows", "vfx_suite.json"), "w") as fh:
        json.dump(ui, fh, indent=2)
    with open(os.path.join(ROOT, "workflows", "vfx_suite.api.json"), "w") as fh:
        json.dump(RUNNABLE, fh, indent=2)
    print("wrote workflows/vfx_suite.json and workflows/vfx_suite.api.json")


if __name__ == "__main__":
    main()
