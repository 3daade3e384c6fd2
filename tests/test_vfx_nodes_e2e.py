"""End-to-end tiny runs of the VFX / camera nodes through the embedded executor."""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from vibeboard_runner.executor import Executor
from vibeboard_runner.registry import NodeRegistry


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    from vibeboard.models import tiny
    from vibeboard.vfx.infcam import InfCamWan, infcam_to_diffsynth_state

    root = tmp_path_factory.mktemp("models")
    tiny.write_comfy_layout(str(root), kinds=("t2v",))
    model = InfCamWan(tiny.build_transformer("t2v", seed=1)).init_from_base()
    (root / "infcam").mkdir()
    state = {k: v.clone().contiguous() for k, v in infcam_to_diffsynth_state(model).items()}
    save_file(state, str(root / "infcam" / "infcam_step35000.safetensors"))
    extras = {k: v for k, v in state.items() if any(s in k for s in (".self_attn_pre.", "modulation0", "cam_encoder",
                                                                         "zero_conv"))}
    save_file(extras, str(root / "infcam" / "infcam_additions_only.safetensors"))
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
        "7": {"class_type": "VBWanTextEncode", "inputs": {"wan": ["4", 0], "prompt": "a red car",
                                                          "negative_prompt": "blurry"}},
        "8": {"class_type": "VBWanSamplerSettings", "inputs": {"steps": 2, "cfg": 2.0, "shift": 5.0,
                                                               "scheduler": "flow_euler", "seed": 0}},
        "5": {"class_type": "VBChangeCamera", "inputs": {"infcam": ["4", 0], "text": ["7", 0], "source_video": ["3", 0],
                                                         "camera_path": ["2", 0], "sampler": ["8", 0],
                                                         "zoom_factor": 1.0}},
        "6": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": "infcam"}},
    }
    res = ex.execute(prompt)
    assert res.status == "success", res.error
    assert len([f for f in res.output_files() if f["node"] == "6"]) == 5


def test_missing_checkpoint_names_node_input_and_path(ex):
    from vibeboard.common import runtime
    from vibeboard.common.runtime import NodeInputError
    from vibeboard.vfx.nodes import VBInfCamLoader

    runtime.set_host_dirs(models=ex.models_dir)
    with pytest.raises(NodeInputError, match=r"InfCam Loader \(VibeBoard\): input 'checkpoint'.*nope.safetensors"):
        VBInfCamLoader().load("infcam/nope.safetensors", "v", "t", "k", "fp32", "cpu")


def test_focus_inspect_node_writes_dailies_json(ex):
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "frame.png"}},
        "2": {"class_type": "VBFocusInspect", "inputs": {"images": ["1", 0], "shot_name": "sc1_sh1", "tile": 8,
                                                         "soft_px": 2.0, "save_report": True}},
    }
    res = ex.execute(prompt)
    assert res.status == "success", res.error
    files = [f for f in res.output_files() if f["node"] == "2"]
    report = json.load(open(files[0]["path"]))
    assert report["shot"] == "sc1_sh1" and report["frames"] == 1 and "warnings" in report


@torch.no_grad()
def test_fix_focus_routes_to_genfocus_deblur(tmp_path):
    import vfx_helpers as TG
    from vibeboard.common.runtime import NodeInputError
    from vibeboard.optics import genfocus as G
    from vibeboard.optics_learned.nodes import GenFocusHandle, VBGenFocusBokeh
    from vibeboard.vfx.nodes import VBFixFocus

    model = TG.tiny_flux()
    TG.write_lora(tmp_path / "deblurNet.safetensors", model)
    G.load_lora_file(model, str(tmp_path / "deblurNet.safetensors"), "deblurring")
    g = torch.Generator().manual_seed(0)
    emb, pooled = torch.randn(1, 5, 32, generator=g), torch.randn(1, 32, generator=g)
    handle = GenFocusHandle(model, TG.tiny_flux_vae(), lambda prompt: (emb, pooled, torch.zeros(5, 3)), {}, ("deblurring",))
    frames = torch.rand(2, 32, 32, 3, generator=g)
    (out,) = VBFixFocus().run(handle, frames, steps=1, seed=0, max_side=1024)
    assert out.shape == (2, 32, 32, 3)
    with pytest.raises(NodeInputError, match=r"GenFocus Bokeh \(VibeBoard\): input 'genfocus'.*bokeh"):
        VBGenFocusBokeh().run(handle, frames[:1], torch.rand(1, 32, 32), steps=1, seed=0, max_side=1024)


def test_change_camera_with_a_wan_handle(ex):
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "frame.png"}},
        "2": {"class_type": "VBCameraPreset", "inputs": {"motion": "orbit_left", "num_frames": 5, "width": 48,
                                                         "height": 32, "fov_deg": 60.0, "speed": 1.0,
                                                         "easing": "linear", "subject_distance": 1.0, "shake": 0.0,
                                                         "seed": 0}},
        "3": {"class_type": "VBRotationPreview", "inputs": {"source_video": ["1", 0], "camera_path": ["2", 0],
                                                            "source": "first_frame", "num_frames": 5}},
        "4": {"class_type": "VBWanModelLoader", "inputs": {"model": "wan2.1_t2v_1.3B_bf16.safetensors",
                                                           "vae": "wan_2.1_vae.safetensors",
                                                           "text_encoder": "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
                                                           "dtype": "fp32"}},
        "5": {"class_type": "VBInfCamLoader", "inputs": {"checkpoint": "infcam/infcam_additions_only.safetensors",
                                                         "vae": "-", "text_encoder": "-", "tokenizer": "-",
                                                         "dtype": "fp32", "device": "cpu", "wan": ["4", 0],
                                                         "attention_head_dim": 16}},
        "8": {"class_type": "VBWanTextEncode", "inputs": {"wan": ["5", 0], "prompt": "a dog", "negative_prompt": ""}},
        "9": {"class_type": "VBWanSamplerSettings", "inputs": {"steps": 1, "cfg": 1.0, "shift": 5.0,
                                                               "scheduler": "unipc", "seed": 0}},
        "6": {"class_type": "VBChangeCamera", "inputs": {"infcam": ["5", 0], "text": ["8", 0], "source_video": ["3", 0],
                                                         "camera_path": ["2", 0], "sampler": ["9", 0],
                                                         "zoom_factor": 1.2}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "infcam_wan"}},
    }
    res = ex.execute(prompt)
    assert res.status == "success", res.error
    assert len([f for f in res.output_files() if f["node"] == "7"]) == 5
