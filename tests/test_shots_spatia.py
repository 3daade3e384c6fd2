"""Spatia location memory: PLY round trip, self-render reproduces the source, frustum-overlap retrieval."""
import math

import numpy as np
import torch

from vibeboard.shots import spatia


def _cams(c2ws, width=48, height=32, fov=60.0):
    fx = (width / 2) / math.tan(math.radians(fov) / 2)
    k = np.array([fx, fx, (width - 1) / 2, (height - 1) / 2])
    return spatia.Cameras(np.stack(c2ws), np.repeat(k[None], len(c2ws), 0), width, height)


def _yaw(deg, pos=(0, 0, 0)):
    a = math.radians(deg)
    m = np.eye(4)
    m[:3, :3] = [[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]]
    m[:3, 3] = pos
    return m


def _scene(seed=0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(32, 48, 3, generator=g)
    depth = 2.0 + torch.rand(32, 48, generator=g)  # a bumpy wall 2..3 units ahead
    return image, depth


def test_ply_round_trip(tmp_path):
    image, depth = _scene()
    cloud = spatia.unproject(depth, image, _cams([_yaw(10, (0.5, 0, 0))]))
    assert len(cloud) == 32 * 48
    path = str(tmp_path / "point_cloud.ply")
    spatia.save_ply(cloud, path)
    head = open(path, "rb").read(200)
    assert head.startswith(b"ply\nformat binary_little_endian 1.0\n") and b"property uchar red" in head
    back = spatia.load_ply(path)
    assert np.array_equal(back.xyz, cloud.xyz) and np.array_equal(back.rgb, cloud.rgb)
    # ascii PLY from other tools loads too
    asc = tmp_path / "a.ply"
    asc.write_text("ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\nproperty float z\n"
                   "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
                   "0 1 2 255 0 0\n3 4 5 0 255 0\n")
    a = spatia.load_ply(str(asc))
    assert a.xyz.tolist() == [[0, 1, 2], [3, 4, 5]] and a.rgb.tolist() == [[255, 0, 0], [0, 255, 0]]


def test_render_from_own_camera_reproduces_source():
    image, depth = _scene(1)
    cams = _cams([_yaw(25, (0.3, -0.2, 1.0))])
    cloud = spatia.unproject(depth, image, cams)
    out, vis, d = spatia.render(cloud, cams, 0)
    assert vis.mean() == 1.0
    src8 = (image * 255).round() / 255
    assert torch.allclose(out, src8, atol=1e-6)
    assert torch.allclose(d, depth, atol=1e-4)
    # a nearer occluder wins the z-test
    centre = cams.c2w[0, :3, 3].astype(np.float32)
    occ = spatia.PointCloud(centre + 0.5 * (cloud.xyz[:1] - centre), np.array([[7, 8, 9]], np.uint8))
    out2, _, _ = spatia.render(cloud.merged(occ), cams, 0)
    assert torch.allclose(out2[0, 0], torch.tensor([7, 8, 9]) / 255.0)


def test_render_path_gives_control_video_and_visibility():
    image, depth = _scene(2)
    cams = _cams([_yaw(0)])
    cloud = spatia.unproject(depth, image, cams)
    path = _cams([_yaw(0), _yaw(20), _yaw(180)])
    video, vis = spatia.render_path(cloud, path, point_radius=1)
    assert video.shape == (3, 32, 48, 3) and vis.shape == (3, 32, 48)
    assert vis[0].mean() == 1 and 0.1 < vis[1].mean() < 1 and vis[2].sum() == 0


def test_frustum_overlap_ranks_same_direction_first(tmp_path):
    image, depth = _scene(3)
    mem = spatia.LocationMemory()
    mem.add_frame(image, depth, _cams([_yaw(0)]))
    mem.add_frame(torch.rand(32, 48, 3), depth, _cams([_yaw(180)]))  # the opposite wall
    new = _cams([_yaw(5), _yaw(10)])
    scores = spatia.frustum_overlap(mem.cloud, mem.reference_cameras(), new)
    assert scores[0] > 0.5 and scores[1] == 0.0
    assert spatia.select_reference_frames(mem.cloud, mem.reference_cameras(), new, k=2) == [0]
    back_path = _cams([_yaw(175)])
    assert spatia.select_reference_frames(mem.cloud, mem.reference_cameras(), back_path, k=1) == [1]
    folder = str(tmp_path / "set")
    mem.save(folder)
    loaded = spatia.LocationMemory.load(folder)
    assert len(loaded.cloud) == len(mem.cloud) and len(loaded.frames) == 2
    assert np.allclose(loaded.reference_cameras().c2w, mem.reference_cameras().c2w)


def test_works_with_the_shared_camera_path_type():
    from vibeboard.camera import CameraPath, intrinsics_from_fov
    image, depth = _scene(4)
    path = CameraPath(np.stack([_yaw(0), _yaw(90)]), intrinsics_from_fov(48, 32, 60.0), 48, 32)
    cloud = spatia.unproject(depth, image, path, 0)
    out, vis, _ = spatia.render(cloud, path, 0)
    assert vis.mean() == 1.0 and torch.allclose(out, (image * 255).round() / 255, atol=1e-6)
    assert spatia.select_reference_frames(cloud, path, spatia.camera_at(path, 0), k=2) == [0]
