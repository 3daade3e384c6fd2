"""Optics Engine nodes: registration, declared inputs, shape validation, conversions."""
import pytest
import torch

import vibeboard
from vibeboard.common import runtime
from vibeboard.optics import nodes
from vibeboard.optics.nodes import (VBBokehRender, VBDefocusMap, VBDepthFromImage, VBRackFocus,
                                    VBSampleRGBDScene)

METRIC = "metric (bigger = farther)"
LENS = dict(aperture_k=10.0, max_coc=16.0, aperture_shape="disc", blades=6, rotation=0.0, linear_light=True)


def test_nodes_registered_with_tooltips_and_category(tmp_path, monkeypatch):
    monkeypatch.setitem(runtime._dirs, "models", str(tmp_path))  # the depth combo lists models/depth
    assert not vibeboard.IMPORT_ERRORS.get("optics")
    for name, cls in nodes.NODE_CLASS_MAPPINGS.items():
        assert vibeboard.NODE_CLASS_MAPPINGS[name] is cls and name.startswith("VB")
        assert cls.CATEGORY == "VibeBoard/Optics Engine" and cls.DESCRIPTION
        assert len(cls.RETURN_TYPES) == len(cls.RETURN_NAMES)
        assert callable(getattr(cls(), cls.FUNCTION))
        spec = cls.INPUT_TYPES()
        for section in ("required", "optional"):
            for input_name, declared in spec.get(section, {}).items():
                assert declared[1].get("tooltip"), f"{name}.{input_name} has no tooltip"
        assert name in nodes.NODE_DISPLAY_NAME_MAPPINGS


def test_depth_size_mismatch_is_a_named_error_or_resized():
    image, depth, _, _, _ = VBSampleRGBDScene().make(64, 48, 0)
    small = depth[:, ::2, ::2]
    with pytest.raises(runtime.NodeInputError) as info:
        VBBokehRender().render(image, small, METRIC, "point", 0.5, 0.5, 1.0, **LENS)
    assert "Bokeh Render (VibeBoard)" in str(info.value) and "'depth'" in str(info.value)
    out, _ = VBBokehRender().render(image, small, METRIC, "point", 0.5, 0.5, 1.0, **LENS,
                                    resize_depth_to_image=True)
    assert out.shape == image.shape
    with pytest.raises(runtime.NodeInputError, match="Rack Focus"):
        VBRackFocus().rack(image, small, METRIC, 2, 0.0, 0.0, False, **LENS)
    with pytest.raises(runtime.NodeInputError, match="3 depth maps for 2 images"):
        VBBokehRender().render(image.repeat(2, 1, 1, 1), depth.repeat(3, 1, 1), METRIC, "point", 0.5, 0.5,
                               1.0, **LENS)


def test_bokeh_focus_modes_and_errors():
    image, depth, _, _, _ = VBSampleRGBDScene().make(96, 64, 1)
    mask = (depth == 3.0).float()
    by_mask, d_mask = VBBokehRender().render(image, depth, METRIC, "mask", 0.5, 0.5, 1.0, **LENS, focus_mask=mask)
    by_dist, d_dist = VBBokehRender().render(image, depth, METRIC, "distance", 0.5, 0.5, 3.0, **LENS)
    assert abs(d_mask - 3.0) < 1e-4 and abs(d_dist - 3.0) < 1e-4
    assert torch.allclose(by_mask, by_dist)
    with pytest.raises(runtime.NodeInputError, match="focus_mask"):
        VBBokehRender().render(image, depth, METRIC, "mask", 0.5, 0.5, 1.0, **LENS)
    with pytest.raises(runtime.NodeInputError, match="focus_mask.*empty"):
        VBBokehRender().render(image, depth, METRIC, "mask", 0.5, 0.5, 1.0, **LENS, focus_mask=mask * 0)
    with pytest.raises(runtime.NodeInputError, match="'image'"):
        VBBokehRender().render(image[..., :2], depth, METRIC, "point", 0.5, 0.5, 1.0, **LENS)


def test_defocus_map_node():
    depth = torch.tensor([[[1.0, 2.0, 4.0, 8.0]]])
    out, distance, picture = VBDefocusMap().compute(depth, METRIC, "distance", 0.5, 0.5, 2.0, 40.0, 100.0)
    assert picture.shape == (1, 1, 4, 3) and torch.equal(picture[..., 1], out)
    assert distance == pytest.approx(2.0)
    assert torch.allclose(out, (40 * (1 / depth - 0.5)).abs() / 100)
    disparity = 1 / depth  # the same scene as relative disparity: nearest = 1, so distances stay
    out_d, _, _ = VBDefocusMap().compute(disparity * 3, "disparity (bigger = nearer)", "distance", 0.5, 0.5, 2.0,
                                      40.0, 100.0)
    assert torch.allclose(out, out_d, atol=1e-6)


def test_depth_from_image_encodings():
    values = torch.tensor([[[0.0, 0.5, 1.0]]])
    white_near = VBDepthFromImage().convert("white = near (disparity)", 1.0, 100.0, mask=values)[0]
    assert torch.allclose(white_near, torch.tensor([[[100.0, 1 / (0.01 + 0.5 * 0.99), 1.0]]]))
    white_far = VBDepthFromImage().convert("white = far (depth)", 2.0, 10.0, image=values[..., None].repeat(1, 1, 1, 3))[0]
    assert torch.allclose(white_far, torch.tensor([[[2.0, 6.0, 10.0]]]))
    raw = VBDepthFromImage().convert("raw metric depth", 1.0, 100.0, mask=values + 3)[0]
    assert torch.equal(raw, values + 3)
    with pytest.raises(runtime.NodeInputError, match="'image'"):
        VBDepthFromImage().convert("raw metric depth", 1.0, 100.0)
    with pytest.raises(runtime.NodeInputError, match="'far'"):
        VBDepthFromImage().convert("white = far (depth)", 5.0, 2.0, mask=values)


def test_rack_focus_same_for_metric_depth_and_its_disparity():
    image, depth, _, _, _ = VBSampleRGBDScene().make(64, 40, 0)
    metric, _, _ = VBRackFocus().rack(image, depth, METRIC, 3, 0.0, 0.0, False, **LENS)
    disparity, near, far = VBRackFocus().rack(image, 5.0 / depth, "disparity (bigger = nearer)", 3, 0.0, 0.0,
                                              False, **LENS)
    assert (metric - disparity).abs().max() < 1e-4
    assert abs(near - 1.0) < 1e-3 and abs(far - 40.0) < 0.1  # relative units: the nearest surface is at 1
