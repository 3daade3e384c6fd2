"""Learn2Refocus on the files a user downloads: the published SVD scheduler config, the authors' inference settings
(simple_inference.py: motion bucket 0, noise augmentation 0, fps 7, guidance 1.5 on every slice) and their
`find_scale` working size."""
import json
import os

import pytest
import torch

import vfx_helpers as H
from vibeboard.optics import learn2refocus as L
from vibeboard.optics_learned.nodes import VBLearn2Refocus

# stabilityai/stable-video-diffusion-img2vid scheduler/scheduler_config.json as published (keys the
# EulerDiscreteScheduler constructor does not take included: clip_sample, set_alpha_to_one, skip_prk_steps)
PUBLISHED_SVD_SCHEDULER = {
    "_class_name": "EulerDiscreteScheduler", "_diffusers_version": "0.24.0.dev0", "beta_end": 0.012,
    "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": False, "interpolation_type": "linear",
    "num_train_timesteps": 1000, "prediction_type": "v_prediction", "set_alpha_to_one": False, "sigma_max": 700.0,
    "sigma_min": 0.002, "skip_prk_steps": True, "steps_offset": 1, "timestep_spacing": "leading",
    "timestep_type": "continuous", "trained_betas": None, "use_karras_sigmas": True}


@pytest.fixture(scope="module")
def refocus(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    unet_dir, svd = H.write_refocus_folders(root)
    with open(os.path.join(svd, "scheduler", "scheduler_config.json"), "w") as fh:
        json.dump(PUBLISHED_SVD_SCHEDULER, fh)
    vae, enc, sched = L.load_svd_parts(svd, torch.float32)
    return L.RefocusModel(L.load_refocus_unet(unet_dir, torch.float32), vae, enc, sched)


def test_published_scheduler_config_builds_and_samples(refocus):
    image = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(0))
    stack = L.focal_stack(refocus, image, steps=1, size=(64, 64))  # EulerDiscreteScheduler(**cfg) raised here
    assert stack.shape == (9, 64, 64, 3) and torch.isfinite(stack).all()
    assert refocus.scheduler_config["skip_prk_steps"] is True  # the file is read as published
    sched = L.make_scheduler(refocus.scheduler_config)
    assert sched.config.prediction_type == "v_prediction" and sched.config.use_karras_sigmas


def test_default_run_uses_the_authors_settings(refocus, monkeypatch):
    seen = []
    forward = refocus.unet.forward

    def spy(*args, **kwargs):
        seen.append(kwargs["added_time_ids"].clone())
        return forward(*args, **kwargs)

    monkeypatch.setattr(refocus.unet, "forward", spy)
    L.focal_stack(refocus, torch.rand(1, 64, 64, 3), steps=1, size=(64, 64))
    # fps 7 is conditioned as fps − 1; motion bucket 0; noise augmentation 0 (both CFG halves)
    assert seen[0].tolist() == [[6.0, 0.0, 0.0], [6.0, 0.0, 0.0]]
    node = VBLearn2Refocus.INPUT_TYPES()
    assert node["required"]["min_guidance"][1]["default"] == 1.5
    assert node["required"]["max_guidance"][1]["default"] == 1.5
    assert node["optional"]["motion_bucket_id"][1]["default"] == 0
    assert node["optional"]["noise_aug_strength"][1]["default"] == 0.0


def test_user_settings_reach_the_model(refocus, monkeypatch):
    seen = []
    forward = refocus.unet.forward
    monkeypatch.setattr(refocus.unet, "forward",
                        lambda *a, **k: (seen.append(k["added_time_ids"][0].tolist()), forward(*a, **k))[1])
    VBLearn2Refocus().run(refocus, torch.rand(1, 64, 64, 3), 6, 1, 1.0, 3.0, 0, motion_bucket_id=127,
                          noise_aug_strength=0.02)
    assert seen[0] == pytest.approx([6.0, 127.0, 0.02])


@pytest.mark.parametrize("size,expected", [((3024, 4032), (576, 832)), ((1080, 1920), (512, 960)),
                                           ((1000, 750), (832, 576)), ((480, 832), (448, 832))])
def test_working_size_is_the_authors_find_scale(size, expected):
    # values of simple_inference.py::find_scale (scale lowered by 0.01 until ⌊·/64⌋·64 sides fit 500k pixels)
    assert L.working_size(*size) == expected
