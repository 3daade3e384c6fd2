"""Depth estimation from a local Hugging Face folder: tiny random-config Depth Anything V2 / Depth Pro
models saved with save_pretrained (safetensors), loaded back with local_files_only, run end to end."""
import json
import os

import pytest
import torch

from vibeboard.common import runtime
from vibeboard.optics import defocus, depth_estimation
from vibeboard.optics.nodes import VBBokehRender, VBDepthEstimate

DA_PREPROCESSOR = {  # the published Depth-Anything-V2-*-hf preprocessor, smaller target size
    "do_normalize": True, "do_rescale": True, "do_resize": True, "ensure_multiple_of": 14,
    "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
    "image_processor_type": "DPTImageProcessor", "keep_aspect_ratio": True, "resample": 3,
    "rescale_factor": 1 / 255, "size": {"height": 56, "width": 56}}


def _dinov2(**extra):
    return dict(model_type="dinov2", hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                intermediate_size=64, patch_size=14, **extra)


def save_tiny_depth_anything(folder):
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation
    torch.manual_seed(0)
    config = DepthAnythingConfig(backbone_config=_dinov2(image_size=56, out_indices=[1, 2, 3, 4],
                                                         reshape_hidden_states=False),
                                 reassemble_hidden_size=32, neck_hidden_sizes=[8, 16, 32, 32],
                                 fusion_hidden_size=16, head_hidden_size=8)
    model = DepthAnythingForDepthEstimation(config).eval()
    with torch.no_grad():  # random heads output ~0 through the ReLU; make the depth non-trivial
        for p in model.head.parameters():
            p.normal_(0, 0.5)
        model.head.conv3.bias.fill_(2.0)
    model.save_pretrained(folder)
    with open(os.path.join(folder, "preprocessor_config.json"), "w") as fh:
        json.dump(DA_PREPROCESSOR, fh)
    return model


def save_tiny_depth_pro(folder):
    from transformers import DepthProConfig, DepthProForDepthEstimation
    torch.manual_seed(0)
    backbone = _dinov2(image_size=56)
    backbone["num_hidden_layers"] = 3
    config = DepthProConfig(patch_size=56, fusion_hidden_size=16, intermediate_hook_ids=[2, 1],
                            intermediate_feature_dims=[16, 16], scaled_images_ratios=[0.5, 1.0],
                            scaled_images_overlap_ratios=[0.0, 0.25], scaled_images_feature_dims=[16, 16],
                            use_fov_model=True, num_fov_head_layers=1, image_model_config=backbone,
                            patch_model_config=dict(backbone), fov_model_config=dict(backbone))
    DepthProForDepthEstimation(config).eval().save_pretrained(folder)
    with open(os.path.join(folder, "preprocessor_config.json"), "w") as fh:
        json.dump({"image_processor_type": "DepthProImageProcessor", "do_normalize": True,
                   "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
                   "size": {"height": 112, "width": 112}}, fh)


@pytest.fixture()
def models_dir(tmp_path, monkeypatch):
    monkeypatch.setitem(runtime._dirs, "models", str(tmp_path))
    depth_estimation._cache.clear()
    yield tmp_path
    depth_estimation._cache.clear()


def _smooth_image(h=50, w=70):
    y, x = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    return ((torch.stack([x, y, x * y], -1) * 255).round() / 255)[None]


def test_depth_anything_round_trip_matches_transformers_pipeline(models_dir):
    folder = models_dir / "depth" / "tiny-da"
    save_tiny_depth_anything(str(folder))
    assert sorted(os.listdir(folder)) == ["config.json", "model.safetensors", "preprocessor_config.json"]
    # present folders first, then the registry's folders not pulled yet (so saved workflows validate)
    assert VBDepthEstimate.INPUT_TYPES()["required"]["model"][0][:2] == ["tiny-da", "Depth-Anything-V2-Small-hf"]
    image = _smooth_image()
    depth, convention = VBDepthEstimate().estimate("tiny-da", image, "model native", 1.0, 100.0, "fp32")
    assert depth.shape == (1, 50, 70) and convention.startswith("disparity")
    assert float(depth.min()) > 0 and float(depth.std()) > 1e-3
    # the same model through transformers' own image processor + post-processing
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation
    processor = AutoImageProcessor.from_pretrained(str(folder), local_files_only=True)
    model = AutoModelForDepthEstimation.from_pretrained(str(folder), local_files_only=True).eval()
    inputs = processor(images=(image[0] * 255).to(torch.uint8).numpy(), return_tensors="pt")
    with torch.no_grad():
        reference = processor.post_process_depth_estimation(model(**inputs), target_sizes=[(50, 70)])
    reference = reference[0]["predicted_depth"]
    assert (reference - depth[0]).abs().max() < 1e-3 * float(reference.abs().max())
    # end to end: estimated depth drives the renderer
    out, _ = VBBokehRender().render(image, depth, convention, "point", 0.5, 0.5, 1.0, 10.0, 16.0, "disc", 6,
                                    0.0, True)
    assert out.shape == (1, 50, 70, 3) and torch.isfinite(out).all()
    metric, label = VBDepthEstimate().estimate("tiny-da", image, "metric (bigger = farther)", 1.0, 50.0, "fp32")
    assert label.startswith("metric")
    assert abs(float(metric.min()) - 1.0) < 1e-3 and abs(float(metric.max()) - 50.0) < 0.05
    # nearer in disparity ⇔ nearer in metric depth
    assert torch.equal(depth[0].flatten().argmax(), metric[0].flatten().argmin())


def test_depth_pro_tiny_runs_to_metric_depth(models_dir):
    folder = models_dir / "depth" / "tiny-depth-pro"
    save_tiny_depth_pro(str(folder))
    dm = depth_estimation.load(str(folder), precision="fp32")
    assert dm.kind == "depth_pro" and dm.convention == defocus.METRIC
    image = torch.rand(2, 40, 60, 3, generator=torch.Generator().manual_seed(0))
    depth = depth_estimation.estimate(dm, image)
    assert depth.shape == (2, 40, 60) and float(depth.min()) > 0 and torch.isfinite(depth).all()
    # metric depth = 1 / (canonical inverse depth · 2·tan(fov/2)), as the published post-processing does
    x = (image[:1].permute(0, 3, 1, 2) - 0.5) / 0.5
    x = torch.nn.functional.interpolate(x, size=(112, 112), mode="bilinear", align_corners=False)
    with torch.no_grad():
        out = dm.model(pixel_values=x)
    scale = 2 * torch.tan(torch.deg2rad(out.field_of_view[0]) / 2)
    inverse = torch.nn.functional.interpolate((out.predicted_depth * scale)[None], size=(40, 60),
                                              mode="bilinear", align_corners=False)[0, 0]
    assert torch.allclose(depth[0], 1 / inverse.clamp(1e-4, 1e4), rtol=1e-4)


def test_missing_weights_error_names_node_input_and_path(models_dir):
    with pytest.raises(runtime.NodeInputError) as info:
        VBDepthEstimate().estimate("Depth-Anything-V2-Small-hf", _smooth_image(), "model native", 1.0, 100.0)
    message = str(info.value)
    expected = os.path.join(str(models_dir), "depth", "Depth-Anything-V2-Small-hf")
    assert "Depth Estimate (VibeBoard)" in message and "'model'" in message and expected in message
    # pickled weights only: refused, and the message says so
    folder = models_dir / "depth" / "pickled"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "depth_anything"}')
    (folder / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(runtime.NodeInputError, match="safetensors"):
        VBDepthEstimate().estimate("pickled", _smooth_image(), "model native", 1.0, 100.0)
    assert VBDepthEstimate.INPUT_TYPES()["required"]["model"][0][0] == "pickled"
