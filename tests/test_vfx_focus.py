import math

import torch
import torch.nn.functional as F

from vibeboard.vfx.focus_inspect import blur_map, estimate_focus_plane, focus_map, gaussian_blur, inspect_shot


def texture(h=128, w=192, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 1, h // 16, w // 16, generator=g)  # 16-px blocks: step edges, like object edges
    return F.interpolate(x, size=(h, w), mode="nearest")  # crisp edges everywhere


def to_image(luma):
    return luma[0, 0][..., None].repeat(1, 1, 3)[None]


def half_blurred(sigma=3.0, seed=0):
    x = texture(seed=seed)
    blurred = gaussian_blur(x, sigma)
    out = x.clone()
    out[..., 96:] = blurred[..., 96:]
    return to_image(out)


def test_focus_map_separates_sharp_and_blurred_halves():
    img = half_blurred(3.0)
    fmap = focus_map(img, tile=24)
    left, right = fmap[0, :, :84].mean(), fmap[0, :, 108:].mean()
    assert left > 0.6 and right < 0.45 and left - right > 0.3
    sigma, _, _ = blur_map(img, tile=24)
    sl, sr = sigma[0, :, :4].nanmedian(), sigma[0, :, 4:].nanmedian()
    assert sl < 1.2
    assert 2.0 < sr < 4.2  # recovers the applied σ = 3 roughly


def test_contrast_does_not_change_the_estimate():
    img = half_blurred(3.0)
    a, _, _ = blur_map(img, tile=24)
    b, _, _ = blur_map(img * 0.5 + 0.2, tile=24)
    both = ~torch.isnan(a) & ~torch.isnan(b)
    assert both.float().mean() > 0.8
    assert torch.allclose(a[both], b[both], rtol=1e-3, atol=1e-4)


def test_flat_tiles_are_unknown():
    img = torch.full((1, 64, 64, 3), 0.5)
    sigma, _, _ = blur_map(img, tile=24)
    assert torch.isnan(sigma).all()


def test_focus_plane_from_depth():
    # near half (depth 1) sharp, far half (depth 4) blurred: the lens focused at ~1
    img = half_blurred(3.0)
    sigma, _, _ = blur_map(img, tile=24)
    inv = torch.where(torch.arange(sigma.shape[2]) < 4, 1.0, 0.25).expand_as(sigma[0])
    plane = estimate_focus_plane(sigma[0], inv)
    assert plane["focus_inv"] is not None and abs(plane["focus_inv"] - 1.0) < 0.1


def test_shot_report_warns_when_subject_goes_soft():
    frames = []
    for t in range(8):
        x = texture(seed=1)
        if t >= 4:  # subject (centre) goes soft, background stays sharp
            b = gaussian_blur(x, 3.5)
            x[..., 24:104, 48:144] = b[..., 24:104, 48:144]
        frames.append(to_image(x))
    frames = torch.cat(frames)
    depth_inv = torch.full((1, 128, 192), 0.2)
    depth_inv[:, 24:104, 48:144] = 1.0  # subject is near; the sharp background is far → back focus
    report = inspect_shot(frames, inv_depth=depth_inv, tile=24, shot="sc1_sh2")
    types = {w["type"] for w in report["warnings"]}
    assert "back_focus" in types, report["warnings"]
    warn = [w for w in report["warnings"] if w["type"] == "back_focus"][0]
    assert warn["frames"] == [4, 7]
    assert report["per_frame"][0]["subject_blur_px"] < 1.2
    assert math.isclose(report["in_focus_fraction"], 0.5)
    sharp = inspect_shot(frames[:4], tile=24)
    assert sharp["warnings"] == []
