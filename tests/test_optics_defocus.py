"""Defocus map: the GenFocus formula, depth conventions, focus selection."""
import math

import pytest
import torch

from vibeboard.optics import defocus


def test_formula_matches_genfocus():
    depth = torch.tensor([[0.5, 1.0, 2.0, 4.0]])
    inv = defocus.inverse_depth(depth, defocus.METRIC)
    k, d_focus, max_coc = 30.0, 2.0, 100.0
    expected = (k * (1 / depth - 1 / d_focus)).abs() / max_coc
    got = defocus.defocus_map(inv, defocus.focus_from_distance(d_focus), k, max_coc)
    assert torch.allclose(got, expected.clamp(0, 1), atol=1e-6)
    assert got[0, 2] == 0  # the focal plane is sharp


def test_clamped_to_unit_range():
    inv = defocus.inverse_depth(torch.tensor([[0.01, 1000.0]]), defocus.METRIC)
    got = defocus.defocus_map(inv, 1.0, 50.0, 10.0)
    assert got.max() == 1.0 and got.min() >= 0


def test_signed_coc_sign_and_batch():
    inv = torch.tensor([[1.0, 0.1]])
    coc = defocus.signed_coc(inv, torch.tensor([0.5, 1.0]), 10.0)
    assert coc.shape == (2, 1, 2)
    assert coc[0, 0, 0] > 0 and coc[0, 0, 1] < 0  # nearer than focus positive, farther negative


def test_conventions_agree_on_disparity_of_metric_depth():
    depth = torch.tensor([[1.0, 2.0, 5.0, 10.0]])
    inv_metric = defocus.inverse_depth(depth, defocus.METRIC)
    inv_disp = defocus.inverse_depth(7.0 / depth, defocus.DISPARITY)  # arbitrary disparity scale
    assert torch.allclose(inv_metric, inv_disp, atol=1e-6)  # nearest = 1 in both


def test_zero_and_invalid_depth_guarded():
    depth = torch.tensor([[0.0, -1.0, float("nan"), float("inf"), 1e-9, 2.0]])
    inv = defocus.inverse_depth(depth, defocus.METRIC)
    assert torch.isfinite(inv).all()
    assert inv[0, :4].eq(0).all()  # no data → infinitely far
    assert inv[0, 4] == pytest.approx(1 / defocus.MIN_DEPTH)
    assert torch.isfinite(defocus.inverse_depth(torch.zeros(3, 3), defocus.DISPARITY)).all()
    with pytest.raises(ValueError):
        defocus.inverse_depth(depth, "inverse")


def test_focus_point_uses_robust_median():
    depth = torch.full((64, 64), 4.0)
    depth[30:35, 30:35] = 2.0
    depth[32, 32] = 100.0  # one outlier under the click
    inv = defocus.inverse_depth(depth, defocus.METRIC)
    assert 1 / defocus.focus_from_point(inv, 32 / 63, 32 / 63, window=5) == pytest.approx(2.0)
    assert 1 / defocus.focus_from_point(inv, 0.05, 0.95) == pytest.approx(4.0)


def test_focus_mask_median_and_empty_mask():
    depth = torch.full((32, 32), 10.0)
    depth[:, :8] = 1.5
    inv = defocus.inverse_depth(depth, defocus.METRIC)
    mask = torch.zeros(32, 32)
    mask[:, :10] = 1  # mostly the 1.5 m strip
    assert 1 / defocus.focus_from_mask(inv, mask) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="empty"):
        defocus.focus_from_mask(inv, torch.zeros(32, 32))


def test_focus_from_distance_and_point_agree():
    inv = defocus.inverse_depth(torch.full((8, 8), 3.0), defocus.METRIC)
    assert defocus.focus_from_distance(3.0) == pytest.approx(1 / 3)
    assert defocus.focus_from_point(inv, 0.5, 0.5) == pytest.approx(1 / 3)
    assert defocus.focus_from_distance(math.inf) == 0.0
