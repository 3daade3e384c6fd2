import math

import numpy as np
import torch

from vibeboard.camera import preset_path
from vibeboard.camera.rotations import rot_x, rot_y, rot_z
from vibeboard.vfx.homography import (infinite_homography, path_homographies, rotation_preview, sampling_grid,
                                      scale_intrinsics, warp_homography, warp_latents, warp_tokens)

W, H = 96, 64
DIRS = [np.array(v) / np.linalg.norm(v) for v in ([0.0, 0.0, 1.0], [0.25, -0.1, 1.0], [-0.2, 0.15, 1.0],
                                                   [0.1, 0.2, 1.0])]


def K_of(f, w=W, h=H):
    return np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1.0]])


def render_sky(K, R, sigma=0.04):
    """A scene at infinity: Gaussian blobs on the sphere, seen by a camera with c2w rotation R."""
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    pix = np.stack([xs, ys, np.ones_like(xs)], -1) @ np.linalg.inv(K).T
    rays = pix @ R.T
    rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
    img = np.zeros((H, W))
    for d in DIRS:
        ang = np.arccos(np.clip(rays @ d, -1, 1))
        img += np.exp(-(ang / sigma) ** 2)
    return img


def test_pure_rotation_matches_analytic_reprojection():
    K_src, K_trg = K_of(80.0), K_of(92.0)  # the target also zooms in a little
    R = rot_y(math.radians(6)) @ rot_x(math.radians(-3)) @ rot_z(math.radians(4))
    src = torch.tensor(render_sky(K_src, np.eye(3)))[None, None]
    Hm = infinite_homography(K_src, K_trg, R)
    out, valid = warp_homography(src, Hm, return_valid=True)
    want = render_sky(K_trg, R)
    err = (out[0, 0].numpy() - want)[valid[0].numpy()]
    assert valid.float().mean() > 0.7
    assert np.abs(err).max() < 0.05  # bilinear resampling of a smooth scene
    # blob centres land where the analytic projection K_trg · Rᵀ · d puts them (sub-pixel)
    warped = out[0, 0].numpy()
    ys, xs = np.mgrid[0:H, 0:W]
    for d in DIRS:
        p = K_trg @ (R.T @ d)
        px, py = p[0] / p[2], p[1] / p[2]
        win = (np.abs(xs - px) < 6) & (np.abs(ys - py) < 6)
        wgt = warped * win
        cx, cy = (wgt * xs).sum() / wgt.sum(), (wgt * ys).sum() / wgt.sum()
        assert math.hypot(cx - px, cy - py) < 0.15, (cx, cy, px, py)


def test_sampling_grid_is_the_inverse_reprojection():
    K_src, K_trg = K_of(70.0), K_of(70.0)
    R = rot_y(0.2)
    src_xy, _, _ = sampling_grid(infinite_homography(K_src, K_trg, R), H, W)
    for (x, y) in [(0, 0), (50, 20), (W - 1, H - 1)]:
        ray = R @ np.linalg.inv(K_trg) @ np.array([x, y, 1.0])  # target pixel → world direction
        p = K_src @ ray
        assert np.allclose(src_xy[0, y, x].numpy(), p[:2] / p[2], atol=1e-9)


def test_identity_rotation_is_exact_noop():
    x = torch.rand(3, 5, H, W)
    Hm = infinite_homography(K_of(80.0), K_of(80.0), np.eye(3))
    assert torch.equal(warp_homography(x, Hm), x)
    static = preset_path("static", 5, W, H)
    tok = torch.rand(1, 5, 4, 6, 8)
    assert torch.equal(warp_tokens(tok, path_homographies(static, grid_size=(6, 4))[None]), tok)
    # the general path (tiny rotation) stays continuous with the no-op
    Hs = infinite_homography(K_of(80.0), K_of(80.0), rot_y(1e-7))
    assert (warp_homography(x, Hs) - x).abs().max() < 1e-4


def test_intrinsics_scaled_to_token_grid():
    path = preset_path("pan_right", 9, 832, 480)
    K = torch.as_tensor(path.K()[0])
    Kg = scale_intrinsics(K, (832, 480), (52, 30))
    assert math.isclose(float(Kg[0, 0]), float(K[0, 0]) / 16) and math.isclose(float(Kg[1, 1]), float(K[1, 1]) / 16)
    assert math.isclose(float(Kg[0, 2]), 25.5) and math.isclose(float(Kg[1, 2]), 14.5)  # grid centre
    # the grid homography is the pixel homography conjugated by the pixel→grid map
    S = torch.tensor([[1 / 16, 0, 0.5 / 16 - 0.5], [0, 1 / 16, 0.5 / 16 - 0.5], [0, 0, 1]], dtype=torch.float64)
    Hp = path_homographies(path)
    Hg = path_homographies(path, grid_size=(52, 30))
    conj = S @ Hp @ torch.linalg.inv(S)
    assert torch.allclose(Hg / Hg[:, 2:, 2:], conj / conj[:, 2:, 2:], atol=1e-10)


def test_token_and_latent_warps_agree_with_image_warp():
    torch.manual_seed(0)
    Hs = path_homographies(preset_path("pan_left", 3, 64, 32), grid_size=(8, 4))
    tok = torch.rand(1, 3, 4, 8, 6)
    lat = tok.permute(0, 4, 1, 2, 3)
    a = warp_tokens(tok, Hs[None])
    b = warp_latents(lat, Hs[None])
    assert torch.allclose(a.permute(0, 4, 1, 2, 3), b)
    c = warp_homography(tok[0].permute(0, 3, 1, 2), Hs)
    assert torch.allclose(a[0].permute(0, 3, 1, 2), c)


def test_rotation_preview_first_frame_pan():
    frames = torch.rand(4, 32, 48, 3)
    path = preset_path("pan_right", 4, 48, 32, easing="linear")
    out, valid = rotation_preview(frames, path)
    assert out.shape == frames.shape and valid.shape == (4, 32, 48)
    assert torch.equal(out[0], frames[0])
    # panning right: content moves left, so the right edge of later frames is uncovered
    assert valid[-1, :, -1].sum() == 0 and valid[-1, :, 0].all()
