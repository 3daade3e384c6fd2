"""Rack focus: the sweep is even in 1/d and per-layer sharpness peaks move near → far across frames."""
import torch

from vibeboard.common import runtime
from vibeboard.optics import bokeh, defocus, focal_stack, sample_scene, sharpness
from vibeboard.optics.nodes import VBRackFocus, VBSampleRGBDScene


def test_sweep_is_linear_in_inverse_depth():
    focus = focal_stack.focus_sweep(1.0, 0.1, 10)
    steps = focus[1:] - focus[:-1]
    assert torch.allclose(steps, steps[0].expand_as(steps), atol=1e-6)
    assert focal_stack.focus_sweep(0.5, 0.1, 1).tolist() == [0.5]


def test_sweep_range_auto_and_explicit():
    scene = sample_scene.make_scene(96, 64, seed=0)
    inv = defocus.inverse_depth(scene.depth, defocus.METRIC)
    near_inv, far_inv = focal_stack.sweep_range(inv)
    assert abs(1 / near_inv - 1.0) < 1e-4 and abs(1 / far_inv - 40.0) < 1e-2
    near_inv, far_inv = focal_stack.sweep_range(inv, 2.0, 5.0)
    assert (near_inv, far_inv) == (0.5, 0.2)


def test_sample_scene_is_deterministic_and_has_known_depths():
    a = sample_scene.make_scene(128, 72, seed=5)
    b = sample_scene.make_scene(128, 72, seed=5)
    c = sample_scene.make_scene(128, 72, seed=6)
    assert torch.equal(a.image, b.image) and torch.equal(a.depth, b.depth)
    assert not torch.equal(a.image, c.image)
    assert a.image.shape == (72, 128, 3) and a.depth.shape == (72, 128)
    assert sorted(set(a.depth.unique().tolist())) == sorted(sample_scene.LAYER_DEPTHS)
    for label in range(4):
        assert int(sharpness.erode(a.mask(label), 3).sum()) > 50


def test_sharpness_peaks_move_near_to_far():
    scene = sample_scene.make_scene(192, 108, seed=2)
    inv = defocus.inverse_depth(scene.depth, defocus.METRIC)
    lens = bokeh.LensSettings(aperture_k=12.0, max_coc=24.0)
    frames, distances = focal_stack.render_focal_stack(scene.image, inv, 12, lens)
    assert frames.shape == (12, 108, 192, 3)
    assert distances[0] < distances[-1]
    peak = sharpness.sharpest_frame_per_layer(frames, scene.labels, erosion=3)
    near, mid, far, background = peak[3], peak[2], peak[1], peak[0]
    assert near == 0 and near < mid < far <= background == 11, peak
    assert sharpness.moves_near_to_far(frames, scene.labels, scene.layer_depths)
    assert not sharpness.moves_near_to_far(frames.flip(0), scene.labels, scene.layer_depths)
    scores = sharpness.layer_sharpness(frames, scene.labels, erosion=3)
    assert scores[0, 3] > 5 * scores[-1, 3]  # the near panel really loses its sharpness at the end
    assert scores[-1, 0] > 5 * scores[0, 0]  # and the background gains it
    reverse, _ = focal_stack.render_focal_stack(scene.image, inv, 12, lens, reverse=True)
    assert (reverse.flip(0) - frames).abs().max() < 1e-5


def test_rack_focus_node_progress_and_interrupt():
    image, depth, near, far, preview = VBSampleRGBDScene().make(96, 64, 0)
    assert preview.shape == (1, 64, 96, 3) and float(preview.max()) == 1.0
    assert (near, far) == (1.0, 40.0)
    calls = []
    runtime.set_host_hooks(lambda value, total, preview: calls.append((value, total)), lambda: False)
    try:
        frames, first, last = VBRackFocus().rack(image, depth, "metric (bigger = farther)", 6, 0.0, 0.0, False,
                                                 10.0, 16.0, "polygon", 6, 0.0, True)
        assert frames.shape == (6, 64, 96, 3) and frames.dtype == torch.float32
        assert abs(first - 1.0) < 1e-3 and abs(last - 40.0) < 0.1
        assert calls and calls[-1] == (6, 6)
        runtime.set_host_hooks(None, lambda: True)
        try:
            VBRackFocus().rack(image, depth, "metric (bigger = farther)", 6, 0.0, 0.0, False, 10.0, 16.0,
                               "disc", 6, 0.0, True)
            raise AssertionError("interrupt ignored")
        except runtime.InterruptProcessing:
            pass
    finally:
        runtime.set_host_hooks(None, None)
