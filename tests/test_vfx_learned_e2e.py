"""GenFocus, Fix Focus and Learn2Refocus nodes end to end through the executor, on tiny models saved in the
published layouts (FLUX.1-dev diffusers folder + DeblurNet/BokehNet LoRA files; Learn2Refocus UNet folder +
SVD folder)."""
import pytest

import vfx_helpers as H
from vibeboard_runner.executor import Executor
from vibeboard_runner.registry import NodeRegistry


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    pipe = H.write_flux_folder(root / "diffusers" / "FLUX.1-dev")
    H.write_lora(root / "genfocus" / "deblurNet.safetensors", pipe.transformer, seed=1)
    H.write_lora(root / "genfocus" / "bokehNet.safetensors", pipe.transformer, seed=2)
    H.write_refocus_folders(root)
    return root


@pytest.fixture
def ex(tmp_path, models):
    return Executor(NodeRegistry.default(), output_dir=tmp_path / "out", input_dir=tmp_path / "in",
                    temp_dir=tmp_path / "t", models_dir=str(models))


SCENE = {"class_type": "VBSampleRGBDScene", "inputs": {"width": 64, "height": 48, "seed": 0}}


def test_genfocus_deblur_bokeh_and_fix_focus(ex):
    prompt = {
        "1": SCENE,
        "2": {"class_type": "VBGenFocusLoader", "inputs": {"flux_folder": "diffusers/FLUX.1-dev",
                                                           "deblur_lora": "genfocus/deblurNet.safetensors",
                                                           "bokeh_lora": "genfocus/bokehNet.safetensors",
                                                           "dtype": "fp32", "device": "cpu"}},
        "3": {"class_type": "VBGenFocusDeblur", "inputs": {"genfocus": ["2", 0], "image": ["1", 0], "steps": 1,
                                                           "guidance": 3.5, "seed": 42, "max_side": 1024}},
        "4": {"class_type": "VBDefocusMap", "inputs": {"depth": ["1", 1], "depth_convention": "metric (bigger = farther)",
                                                       "focus_mode": "point", "focus_x": 0.5, "focus_y": 0.5,
                                                       "focus_distance": 3.0, "aperture_k": 20.0, "max_coc": 100.0}},
        "5": {"class_type": "VBGenFocusBokeh", "inputs": {"genfocus": ["2", 0], "image": ["3", 0],
                                                          "defocus_map": ["4", 0], "steps": 1, "seed": 1234,
                                                          "max_side": 1024}},
        "6": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": "bokeh"}},
        "7": {"class_type": "VBFixFocus", "inputs": {"genfocus": ["2", 0], "image": ["1", 0], "steps": 1, "seed": 0,
                                                     "max_side": 1024}},
        "8": {"class_type": "SaveImage", "inputs": {"images": ["7", 0], "filename_prefix": "fixed"}},
    }
    res = ex.execute(prompt)
    assert res.status == "success", res.error
    nodes = [f["node"] for f in res.output_files()]
    assert nodes.count("6") == 1 and nodes.count("8") == 1


def test_learn2refocus_focal_stack(ex):
    prompt = {
        "1": SCENE,
        "2": {"class_type": "VBLearn2RefocusLoader", "inputs": {
            "unet_folder": "learn2refocus/checkpoint-200000/unet",
            "svd_folder": "diffusers/stable-video-diffusion-img2vid", "dtype": "fp32", "device": "cpu"}},
        "3": {"class_type": "VBLearn2Refocus", "inputs": {"refocus": ["2", 0], "image": ["1", 0], "focal_index": 6,
                                                          "steps": 1, "min_guidance": 1.0, "max_guidance": 3.0,
                                                          "seed": 0}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "stack"}},
    }
    res = ex.execute(prompt)
    assert res.status == "success", res.error
    assert [f["node"] for f in res.output_files()].count("4") == 9
