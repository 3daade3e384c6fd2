"""End-to-end tiny runs of the VFX / camera nodes through the embedded executor."""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from runner.executor import Executor
from runner.registry import NodeRegistry


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    from vibeboard.models import tiny
    from vibeboard.vfx.infcam import InfCamWan, infcam_to_diffsynth_state

    root = tmp_path_factory.mktemp("models")
    tiny.write_comfy_layout(str(root), kinds=("t2v",))
    model = InfCamWan(tiny.build_transformer("t2v", seed=1)).init_from_base()
    (root / "infcam").mkdir()
    save_file({k: v.clone().contiguous() for k, v in infcam_to_diffsynth_state(model).items()},
              str(root / "infcam" / "infcam_step35000.safetensors"))
    return root


@pytest.fixture
def ex(tmp_path, tiny_models):
    (tmp_path / "in").mkdir()
    img = (np.random.default_rng(0).random((32, 48, 3)) * 255).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "in" / "frame.png")
    return Executor(NodeRegistry.default(), output_dir=tmp_path / "out", input_dir=tmp_path / "in",
                    temp_dir=tmp_path / "t", models_dir=str(tiny_models))


def test_preview_and_export_run_headless(ex, tmp_path):
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "frame.png"}},
        "2": {"class_type": "VBCameraPreset", "inputs": {"motion": "pan_right", "num_frames": 9, "width": 48,
                                                         "height": 32, "fov_deg": 60.0, "speed": 1.0,
                                                         "easing": "linear", "subject_distance": 1.0, "shake": 0.2,
                                                         "seed": 1}},
        "3": {"class_type": "VBRotationPreview", "inputs": {"source_video": ["1", 0], "camera_path": ["2", 0],
                                                            "source": "first_frame", "num_frames": 9}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "preview"}},
        "5": {"class_type": "VBCameraPathExport", "inputs": {"camera_path": ["2", 0], "format": "realestate10k",
                                                             "filename_prefix": "vibeboard/cam"}},
    }
    res = ex.execute(prompt)
    assert res.status == "success", res.error
    files = res.output_files()
    assert len([f for f in files if f["node"] == "4"]) == 9
    cam = [f for f in files if f["node"] == "5"][0]
    text = open(cam["path"]).read()
    assert len(text.strip().splitlines()) == 10  # header + 9 poses


def test_change_camera_tiny_end_to_end(ex):
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "frame.png"}},
        "2": {"class_type": "VBCameraPathDraw", "inputs": {"points": json.dumps({"points": [[0.5, 0.5], [0.6, 0.5]]}),
                                                           "mode": "pan_tilt", "num_frames": 5, "width": 48,
                                                           "height": 32, "fov_deg": 60.0, "easing": "linear",
                                                           "subject_distance": 1.0}},
        "3": {"class_type": "VBRotationPreview", "inputs": {"source_video": ["1", 0], "camera_path": ["2", 0],
                                                            "source": "first_frame", "num_frames": 5}},
        "4": {"class_type": "VBInfCamLoader", "inputs": {"checkpoint": "infcam/infcam_step35000.safetensors",
                                                         "vae": "vae/wan_2.1_vae.safetensors",
                                                         "text_encoder": "text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors",
                                                         "tokenizer": "text_encoders/umt5-xxl-tokenizer",
                                                         "dtype": "fp32", "device": "cpu", "attention_head_dim": 16}},
        "5": {"class_type": "VBChangeCamera", "inputs": {"infcam": ["4", 0], "source_video": ["3", 0],
                                                         "camera_path": ["2", 0], "prompt": "a red car",
                                                         "negative_prompt": "", "steps": 2, "cfg": 2.0, "shift": 5.0,
                                                         "seed": 0, "zoom_factor": 1.0}},
        "6": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": "infcam"}},
    }
    res = ex.execute(prompt)
    assert res.status == "success", res.error
    assert len([f for f in res.output_files() if f["node"] == "6"]) == 5


def test_missing_checkpoint_names_node_input_and_path(ex):
    prompt = {
        "4": {"class_type": "VBInfCamLoader", "inputs": {"checkpoint": "infcam/nope.safetensors",
                                                         "vae": "vae/wan_2.1_vae.safetensors",
                                                         "text_encoder": "x", "tokenizer": "y",
                                                         "dtype": "fp32", "device": "cpu"}},
        "5": {"class_type": "VBCameraPathExport", "inputs": {"camera_path": ["6", 0], "format": "vibeboard_json",
                                                             "filename_prefix": "c"}},
        "6": {"class_type": "VBCameraPreset", "inputs": {"motion": "static", "num_frames": 2, "width": 32,
                                                         "height": 32, "fov_deg": 60.0, "speed": 1.0,
                                                         "easing": "linear", "subject_distance": 1.0, "shake": 0.0,
                                                         "seed": 0}},
    }
    from vibeboard.vfx.nodes import VBInfCamLoader
    from vibeboard.common.runtime import NodeInputError
    with pytest.raises(NodeInputError, match="InfCam Loader: input 'checkpoint'.*nope.safetensors"):
        from vibeboard.common import runtime
        runtime.set_host_dirs(models=ex.models_dir)
        VBInfCamLoader().load("infcam/nope.safetensors", "v", "t", "k", "fp32", "cpu")
