"""Bokeh physics: in-focus pixels untouched, blur grows with |1/d − 1/d_f|, occlusion at depth edges,
aperture kernels."""
import math

import torch
import torch.nn.functional as F

from vibeboard.optics import aperture, bokeh, defocus, sample_scene, sharpness

LENS = bokeh.LensSettings(aperture_k=20.0, max_coc=24.0, linear_light=False)


def _checker(h, w, cell=2):
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    board = ((ys // cell + xs // cell) % 2).float()
    return torch.stack([board, 0.5 * board + 0.25, 1 - board], -1)


def _render(image, depth, focus_distance, lens=LENS):
    inv = defocus.inverse_depth(depth, defocus.METRIC)
    return bokeh.render(image, inv, [defocus.focus_from_distance(focus_distance)], lens)[0]


# --- aperture kernels ---------------------------------------------------------------------------

def test_kernels_have_unit_sum():
    for blades in (0, 3, 5, 6, 8):
        for radius in (0.2, 0.6, 1.0, 2.5, 7.3, 15.0):
            k = aperture.kernel(radius, blades, rotation_deg=17.0)
            assert abs(float(k.sum()) - 1.0) < 1e-5
            assert k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1


def test_polygon_has_n_fold_symmetry():
    gen = torch.Generator().manual_seed(0)
    x, y = (torch.rand(2, 5000, generator=gen, dtype=torch.float64) - 0.5) * 24
    for blades in (5, 6, 7):
        base = aperture.coverage(x, y, 10.0, blades, rotation_deg=12.0)
        angle = 2 * math.pi / blades  # rotate the sample points by one blade (counter-clockwise on screen)
        xr = x * math.cos(angle) + y * math.sin(angle)
        yr = -x * math.sin(angle) + y * math.cos(angle)
        assert torch.allclose(base, aperture.coverage(xr, yr, 10.0, blades, 12.0), atol=1e-9)
        half = angle / 2  # not symmetric under half a blade: the test can tell shapes apart
        xh, yh = x * math.cos(half) + y * math.sin(half), -x * math.sin(half) + y * math.cos(half)
        assert (base - aperture.coverage(xh, yh, 10.0, blades, 12.0)).abs().max() > 0.5
    square = aperture.kernel(9.0, 4, rotation_deg=0.0)
    assert torch.allclose(square, torch.rot90(square, 1), atol=1e-7)  # on the pixel grid too
    pentagon = aperture.kernel(9.0, 5)
    assert not torch.allclose(pentagon, torch.rot90(pentagon, 1), atol=1e-3)


def test_polygon_area_and_disc_area():
    r = 12.0
    hexagon = aperture.coverage(*torch.meshgrid(torch.arange(-14.0, 15), torch.arange(-14.0, 15),
                                                indexing="xy"), r, 6).sum()
    assert abs(float(hexagon) - 1.5 * math.sqrt(3) * r * r) / (1.5 * math.sqrt(3) * r * r) < 0.02
    disc = aperture.coverage(*torch.meshgrid(torch.arange(-14.0, 15), torch.arange(-14.0, 15),
                                             indexing="xy"), r, 0).sum()
    assert abs(float(disc) - math.pi * r * r) / (math.pi * r * r) < 0.02


def test_point_light_spreads_into_coc_sized_disc():
    image = torch.zeros(65, 65, 3)
    image[32, 32] = 1.0
    depth = torch.full((65, 65), 2.0)
    lens = bokeh.LensSettings(aperture_k=40.0, max_coc=100.0, linear_light=False)
    out = _render(image, depth, 1.0, lens)  # CoC = 40·|1/2 − 1| = 20 px
    footprint = out[..., 0] > 1e-4
    width = int(footprint.any(0).sum())
    assert 19 <= width <= 23
    assert abs(float(out[..., 0].sum()) - 1.0) < 1e-3  # energy kept


# --- renderer physics ---------------------------------------------------------------------------

def test_in_focus_layer_is_unchanged():
    scene = sample_scene.make_scene(160, 96, seed=3)
    lens = bokeh.LensSettings(aperture_k=12.0, max_coc=24.0)  # linear light on: still exact
    out = _render(scene.image, scene.depth, 3.0, lens)
    interior = sharpness.erode(scene.mask(2), 6)  # > the near panel's blur radius (12·(1 − 1/3)/2 = 4 px)
    assert int(interior.sum()) > 200
    assert (out[interior] - scene.image[interior]).abs().max() < 2e-4
    assert (out[scene.mask(3)] - scene.image[scene.mask(3)]).abs().max() > 0.1  # the rest is blurred


def _edge_width(out):
    """Columns over which a black→white step rises from 2 % to 98 % (middle row): ≈ the blur diameter."""
    row = out[out.shape[0] // 2, :, 0]
    return int(((row > 0.02) & (row < 0.98)).sum())


def test_blur_grows_monotonically_with_inverse_depth_difference():
    step = torch.zeros(48, 64, 3)
    step[:, 32:] = 1.0
    noise = torch.rand(48, 64, 3, generator=torch.Generator().manual_seed(0))
    focus = 2.0
    widths, scores = [], []
    for delta in (0.0, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0):  # blur radius 10·Δ px: 0, 1, 2, 3, 5, 8, 10
        depth = torch.full((48, 64), 1 / (1 / focus + delta))
        widths.append(_edge_width(_render(step, depth, focus)))
        scores.append(float(sharpness.laplacian(_render(noise, depth, focus)[None])[:, 12:-12, 12:-12].var()))
    assert widths[0] == 0 and all(a < b for a, b in zip(widths, widths[1:])), widths
    assert all(a > b for a, b in zip(scores, scores[1:])), scores
    fine = [_edge_width(_render(step, torch.full((48, 64), 1 / (0.5 + x)), focus))
            for x in torch.linspace(0, 0.6, 13).tolist()]  # sub-pixel steps: never sharper when farther off
    assert all(a <= b for a, b in zip(fine, fine[1:])), fine
    # equal |Δ| in front of and behind the focal plane gives equal blur (disc aperture)
    near = _render(noise, torch.full((48, 64), 1 / (1 / focus + 0.25)), focus)
    far = _render(noise, torch.full((48, 64), 1 / (1 / focus - 0.25)), focus)
    assert (near - far).abs().max() < 1e-4


def _two_layer_scene(size=64, edge=32):
    image = torch.zeros(size, size, 3)
    image[:, :edge] = torch.tensor([1.0, 0.0, 0.0])   # red foreground, left
    image[:, edge:] = torch.tensor([0.0, 0.0, 1.0])   # blue background, right
    depth = torch.full((size, size), 10.0)
    depth[:, :edge] = 1.0
    return image, depth


def test_sharp_foreground_does_not_bleed_into_blurred_background():
    image, depth = _two_layer_scene()
    out = _render(image, depth, 1.0)  # background CoC = 20·0.9 = 18 px
    next_to_edge = out[8:56, 32:40]
    assert next_to_edge[..., 0].max() < 0.01, "foreground colour leaked onto the background"
    assert (out[:, :32] - image[:, :32]).abs().max() < 1e-4  # the foreground stays sharp
    # the same blur without occlusion handling does bleed: the check above can fail
    kernel = aperture.kernel(9.0)
    naive = F.conv2d(F.pad(image.permute(2, 0, 1)[:, None], (9, 9, 9, 9), mode="replicate"), kernel[None, None])
    assert naive[0, 0, 8:56, 32:40].max() > 0.3


def test_blurred_foreground_spreads_over_sharp_background():
    image, depth = _two_layer_scene()
    image[:, 32:] = _checker(64, 32)  # textured background, in focus
    out = _render(image, depth, 10.0)  # foreground CoC = 18 px → radius 9
    assert out[8:56, 33, 0].min() > 0.25 or out[8:56, 33:36, 0].mean() > 0.25  # red spreads past the edge
    assert float(out[8:56, 32:36, 0].mean() - image[8:56, 32:36, 0].mean()) > 0.1
    far_from_edge = slice(32 + 12, 64)
    assert (out[:, far_from_edge] - image[:, far_from_edge]).abs().max() < 1e-4  # background still sharp
    assert float(sharpness.laplacian(out[None])[0, :, 4:24].var()) < 1e-3  # foreground blurred


def test_hidden_background_does_not_darken():
    image, depth = _two_layer_scene()
    image[:, 32:] = torch.tensor([0.8, 0.8, 0.8])
    image[:, :32] = torch.tensor([0.8, 0.8, 0.8])  # same colour both sides: any dark fringe is an artefact
    for focus in (1.0, 10.0, 3.0):
        out = _render(image, depth, focus)
        assert (out - 0.8).abs().max() < 1e-3, focus


def test_batch_of_focus_settings_matches_single_renders():
    scene = sample_scene.make_scene(96, 64, seed=1)
    inv = defocus.inverse_depth(scene.depth, defocus.METRIC)
    focus = torch.tensor([1.0, 1 / 3, 0.1])
    lens = bokeh.LensSettings(aperture_k=10.0, max_coc=16.0, blades=5, rotation_deg=10.0)
    batch = bokeh.render(scene.image, inv, focus, lens, focus_batch=3)
    for i, f in enumerate(focus.tolist()):
        single = bokeh.render(scene.image, inv, [f], lens, focus_batch=1)[0]
        assert (batch[i] - single).abs().max() < 1e-5


def test_fill_holes_keeps_opaque_pixels_and_fills_the_rest():
    acc = torch.zeros(1, 4, 16, 16)
    acc[:, :3, :, :8] = 0.3
    acc[:, 3, :, :8] = 1.0
    filled = bokeh.fill_holes(acc)
    assert torch.equal(filled[..., :8], acc[..., :8])
    assert (filled[:, 3] - 1).abs().max() < 1e-5 and (filled[:, :3] - 0.3).abs().max() < 1e-5


def test_downsampled_large_blur_is_close_to_full_resolution():
    image = _checker(64, 64, cell=4)
    depth = torch.full((64, 64), 1.0)
    full = _render(image, depth, 10.0, bokeh.LensSettings(aperture_k=40.0, max_coc=40.0, linear_light=False,
                                                          downsample_radius=0))
    fast = _render(image, depth, 10.0, bokeh.LensSettings(aperture_k=40.0, max_coc=40.0, linear_light=False,
                                                          downsample_radius=8))
    assert (full - fast)[12:52, 12:52].abs().mean() < 0.02


def test_video_batch_renders_each_frame_at_its_own_focus():
    scenes = [sample_scene.make_scene(80, 48, seed=s) for s in (0, 1, 2)]
    images = torch.stack([s.image for s in scenes])
    invs = torch.stack([defocus.inverse_depth(s.depth, defocus.METRIC) for s in scenes])
    focus = [1.0, 1 / 3, 0.1]
    lens = bokeh.LensSettings(aperture_k=10.0, max_coc=16.0)
    video = bokeh.render_batch(images, invs, focus, lens, focus_batch=2)
    for i in range(3):
        single = bokeh.render(images[i], invs[i], [focus[i]], lens)[0]
        assert (video[i] - single).abs().max() < 1e-5


def test_tiny_image_with_huge_blur_and_polygon():
    image = torch.rand(12, 20, 3, generator=torch.Generator().manual_seed(0))
    depth = torch.full((12, 20), 1.0)
    depth[:, 10:] = 50.0
    lens = bokeh.LensSettings(aperture_k=300.0, max_coc=200.0, blades=7, rotation_deg=33.0)
    for focus in (1.0, 50.0):
        out = _render(image, depth, focus, lens)
        assert out.shape == image.shape and torch.isfinite(out).all()


def test_group_by_overlap_merges_overlapping_crops_only():
    boxes = [(0, 0, 100, 0, 100), (1, 2, 102, 0, 100), (2, 500, 600, 0, 100), (3, 498, 598, 0, 100)]
    groups = bokeh.group_by_overlap(boxes, overhead_px=1000)
    assert sorted(sorted(items) for items, _ in groups) == [[0, 1], [2, 3]]
    assert dict((tuple(sorted(items)), box) for items, box in groups)[(0, 1)] == (0, 102, 0, 100)
    assert len(bokeh.group_by_overlap(boxes, overhead_px=10**9)) == 1  # launches dear: one batch


def test_polygon_bokeh_is_inverted_in_front_of_the_focal_plane():
    image = torch.zeros(41, 41, 3)
    image[20, 20] = 1.0
    lens = bokeh.LensSettings(aperture_k=40.0, max_coc=100.0, blades=5, rotation_deg=90.0, linear_light=False)
    behind = _render(image, torch.full((41, 41), 1 / (0.5 - 0.4)), 2.0, lens)[..., 0]  # CoC 16 px
    front = _render(image, torch.full((41, 41), 1 / (0.5 + 0.4)), 2.0, lens)[..., 0]
    assert (front - torch.rot90(behind, 2)).abs().max() < 1e-4
    assert (front - behind).abs().max() > 1e-3  # a pentagon is not point-symmetric
