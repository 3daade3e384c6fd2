"""Asset Bin "Deconstruct scene", weights-free: procedural room → GLB with one node per object, metres,
PBR textures; boxes against the room's ground truth; stage caching; 4-DoF fit; glTF PBR slots."""
import json
import math
import os

import numpy as np
import pytest
import torch

trimesh = pytest.importorskip("trimesh")
pytest.importorskip("pygltflib")

from vibeboard.assetbin import geometry, pbr, scene_glb  # noqa: E402
from vibeboard.assetbin.deconstruct import Settings, deconstruct  # noqa: E402
from vibeboard.assetbin.layout_fit import Pose4, apply_pose, fit_4dof  # noqa: E402
from vibeboard.assetbin.sample_room import make_room  # noqa: E402
from vibeboard.assetbin.stage_cache import StageCache  # noqa: E402

NAMES = ["crate", "cabinet", "stool"]  # left to right in the default room


@pytest.fixture(scope="module")
def room():
    return make_room()


@pytest.fixture(scope="module")
def first_run(room, tmp_path_factory):
    root = tmp_path_factory.mktemp("deconstruct")
    out = str(root / "scene.glb")
    res = deconstruct(room.image, room.depth, str(root / "cache"), Settings(names=NAMES),
                      intrinsics=room.intrinsics, out_path=out)
    return root, res


def box_error(found_min, found_max, true_min, true_max) -> float:
    """Largest corner-coordinate deviation as a fraction of the true box diagonal."""
    lo, hi = np.asarray(found_min, float), np.asarray(found_max, float)
    a, b = np.asarray(true_min, float), np.asarray(true_max, float)
    return float(np.max(np.abs(np.concatenate([lo - a, hi - b]))) / np.linalg.norm(b - a))


def test_room_glb_opens_with_one_node_per_object_and_boxes_within_5_percent(room, first_run):
    _, res = first_run
    scene = trimesh.load(res.glb_path, force="scene")
    assert sorted(scene.graph.nodes_geometry) == sorted(NAMES)
    boxes = scene_glb.world_boxes(res.glb_path)
    for name, (true_min, true_max) in room.true_boxes().items():
        err = box_error(*boxes[name], true_min.numpy(), true_max.numpy())
        assert err < 0.05, (name, err)
        assert abs(boxes[name][0][1]) < 1e-6  # resting on the floor, metres


def test_glb_carries_pbr_textures_and_the_models_that_made_it(first_run):
    _, res = first_run
    info = scene_glb.inspect_glb(res.glb_path)
    assert len(info["nodes"]) == 3
    for node in info["nodes"]:
        assert set(node["textures"]) == {"base_color", "metallic_roughness", "normal"}
        mr = scene_glb.read_texture(info["gltf"], node["textures"]["metallic_roughness"])
        metal, rough = pbr.unpack_metallic_roughness(mr)
        assert torch.allclose(rough, torch.full_like(rough, 0.8), atol=1 / 255)
        assert torch.allclose(metal, torch.zeros_like(metal), atol=1 / 255)
    assert res.models == ["depth (given)"]


def test_changing_only_the_inpaint_prompt_reruns_inpaint_and_later_stages(room, first_run):
    root, first = first_run
    assert [s for s, how in first.stages if how == "ran"] == ["camera", "masks", "inpaint", "meshes", "layout",
                                                              "materials", "glb"]
    again = deconstruct(room.image, room.depth, str(root / "cache"), Settings(names=NAMES),
                        intrinsics=room.intrinsics)
    assert all(how == "cached" for _, how in again.stages)
    changed = deconstruct(room.image, room.depth, str(root / "cache"),
                          Settings(names=NAMES, room_prompt="Empty the room, keep the lamp."),
                          intrinsics=room.intrinsics)
    assert dict(changed.stages) == {"camera": "cached", "masks": "cached", "inpaint": "ran", "meshes": "ran",
                                    "layout": "ran", "materials": "ran", "glb": "ran"}


def test_a_tampered_stage_manifest_cannot_point_outside_the_cache(tmp_path):
    cache = StageCache(str(tmp_path / "cache"))
    key, _, info = cache.run("camera", 1, {"a": 1}, [], lambda: ({"x": torch.ones(2)}, {}))
    manifest = os.path.join(info["folder"], "manifest.json")
    data = json.load(open(manifest))
    (tmp_path / "secret.safetensors").write_bytes(b"not yours")
    data["tensors"] = "../../../secret.safetensors"
    json.dump(data, open(manifest, "w"))
    with pytest.raises(ValueError, match="outside"):
        cache.load("camera", key)


def test_four_dof_fit_recovers_yaw_translation_scale():
    _check_four_dof_fit()


def test_four_dof_fit_works_inside_a_node_under_inference_mode():
    # Nodes run under torch.inference_mode() (ComfyUI's executor and ours): the points arrive as inference tensors
    # and the fit's gradients would record nothing; the fit opts out (common.grad.training_mode).
    with torch.inference_mode():
        _check_four_dof_fit()


def _check_four_dof_fit():
    gen = torch.Generator().manual_seed(0)
    # an L-shaped object (no symmetry that would make yaw ambiguous)
    a = torch.rand(300, 3, generator=gen, dtype=torch.float64) * torch.tensor([1.0, 0.5, 0.3], dtype=torch.float64)
    b = torch.rand(200, 3, generator=gen, dtype=torch.float64) * torch.tensor([0.3, 0.9, 0.8], dtype=torch.float64)
    src = torch.cat([a, b])
    true = Pose4(yaw=math.radians(-123.0), x=1.25, z=-3.4, scale=1.7)
    true.y = -float(src[:, 1].min()) * true.scale
    found = fit_4dof(src, apply_pose(src, true), yaw_starts=6, max_points=250)
    yaw_err = abs((math.degrees(found.yaw - true.yaw) + 180) % 360 - 180)
    assert yaw_err < 1.0
    assert math.hypot(found.x - true.x, found.z - true.z) < 0.01
    assert abs(found.scale - true.scale) * 1.0 < 0.01  # 1 m of object → under 1 cm


def test_normal_map_round_trip_through_glb_under_half_a_degree(room, tmp_path):
    normals = geometry.normals_from_depth(room.depth, room.intrinsics)
    base = pbr.smooth_normals(normals, 2)
    tex = pbr.encode_normal_map(normals, base)
    verts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], float)
    obj = {"name": "card", "vertices": verts, "faces": np.array([[0, 1, 2]]), "uv": verts[:, :2],
           "pose": np.eye(4), "textures": {"normal": tex}}
    path = scene_glb.export_glb([obj], str(tmp_path / "n.glb"))
    info = scene_glb.inspect_glb(path)
    back = scene_glb.read_texture(info["gltf"], info["nodes"][0]["textures"]["normal"])
    decoded = pbr.decode_normal_map(back, base)
    assert float(pbr.angular_error_deg(decoded, normals).mean()) < 0.5


def test_metallic_roughness_texture_is_blue_metal_green_rough(tmp_path):
    metal = torch.zeros(4, 4)
    metal[:, 2:] = 1.0
    rough = torch.linspace(0, 1, 4).view(4, 1).expand(4, 4).contiguous()
    packed = pbr.pack_metallic_roughness(metal, rough)
    assert (packed[..., 2] == (metal * 255).round().numpy()).all()
    assert (packed[..., 1] == (rough * 255).round().numpy()).all()
    verts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], float)
    obj = {"name": "m", "vertices": verts, "faces": np.array([[0, 1, 2]]), "uv": verts[:, :2], "pose": np.eye(4),
           "textures": {"metallic_roughness": packed}}
    info = scene_glb.inspect_glb(scene_glb.export_glb([obj], str(tmp_path / "m.glb")))
    back = scene_glb.read_texture(info["gltf"], info["nodes"][0]["textures"]["metallic_roughness"])
    m2, r2 = pbr.unpack_metallic_roughness(back)
    assert torch.allclose(m2, metal, atol=1 / 255) and torch.allclose(r2, rough, atol=1 / 255)


def test_floor_plane_and_world_frame_put_the_camera_at_its_height(room):
    pts = geometry.unproject(room.depth, room.intrinsics).reshape(-1, 3)
    normal, offset, _ = geometry.fit_plane_ransac(pts, normal_hint=(0, -1, 0), max_angle_deg=60)
    assert abs(offset - 2.4) < 0.01
    c2w = geometry.world_from_camera(normal, offset)
    # the recovered frame is the room's own: same rotation, camera above the origin at its height
    assert torch.allclose(c2w[:3, :3], room.cam_to_world[:3, :3], atol=1e-3)
    assert abs(float(c2w[1, 3]) - 2.4) < 0.01


def test_bad_depth_is_a_clear_error(room, tmp_path):
    bad = room.depth.clone()
    bad[0, 0] = -1
    with pytest.raises(ValueError, match="positive"):
        deconstruct(room.image, bad, str(tmp_path), Settings())
    with pytest.raises(ValueError, match="depth is"):
        deconstruct(room.image, room.depth[:10], str(tmp_path), Settings())


class BoxGenerator:
    """Stand-in for an image-to-3D model with its I/O: (object crop, mask crop) → a mesh in its own frame,
    at its own scale and yaw (here the true box shape, half size, turned 40°)."""
    identity = "stand-in-box-generator"

    def __init__(self, size):
        self.size = size

    def __call__(self, image, mask):
        box = trimesh.creation.box([s * 0.5 for s in self.size]).subdivide().subdivide()
        verts = box.vertices @ trimesh.transformations.rotation_matrix(0.7, [0, 1, 0])[:3, :3].T
        uv = (verts[:, [0, 1]] - verts[:, [0, 1]].min(0)) / np.ptp(verts[:, [0, 1]], 0)
        return torch.tensor(verts), torch.tensor(box.faces), torch.tensor(uv)


def test_a_generated_mesh_is_placed_by_the_4dof_fit(tmp_path):
    from vibeboard.assetbin.sample_room import DEFAULT_OBJECTS

    room = make_room(objects=DEFAULT_OBJECTS[:1])  # the crate alone
    res = deconstruct(room.image, room.depth, str(tmp_path), Settings(names=["crate"], fit_yaw_starts=4,
                                                                      fit_points=200),
                      intrinsics=room.intrinsics, generator=BoxGenerator(room.objects[0]["size"]))
    obj = res.objects[0]
    assert abs(obj["scale"] - 2.0) < 0.1  # the generator made it at half size
    true_min, true_max = room.true_boxes()["crate"]
    assert box_error(obj["box_min"], obj["box_max"], true_min.numpy(), true_max.numpy()) < 0.05
    assert "stand-in-box-generator" in res.models
    boxes = scene_glb.world_boxes(res.glb_path)  # the GLB node carries the fitted scale and pose
    assert box_error(*boxes["crate"], true_min.numpy(), true_max.numpy()) < 0.05


class StandInQwenEdit:
    """Stand-in with the Qwen-Image-Edit pipeline's call signature: paints the whole image one colour and
    records the prompts, so the test sees what the inpaint stage asked for and what it kept."""
    vibeboard_identity = "stand-in-qwen-edit"

    def __init__(self):
        self.prompts = []

    def __call__(self, image, prompt, height, width, **kwargs):
        from types import SimpleNamespace

        self.prompts.append(prompt)
        return SimpleNamespace(images=[np.full((height, width, 3), 0.25, np.float32)])


def test_inpaint_stage_uses_qwen_edit_inside_the_objects_and_records_it(room, tmp_path):
    qwen = StandInQwenEdit()
    res = deconstruct(room.image, room.depth, str(tmp_path), Settings(names=NAMES, inpaint_steps=1),
                      intrinsics=room.intrinsics, qwen=qwen)
    assert qwen.prompts[:3] == [f"Show the complete {n}, restoring any part hidden by other objects." for n in NAMES]
    assert qwen.prompts[3] == Settings().room_prompt
    assert "qwen-image-edit:stand-in-qwen-edit" in res.models
    info = scene_glb.inspect_glb(res.glb_path)
    albedo = scene_glb.read_texture(info["gltf"], info["nodes"][0]["textures"]["base_color"])
    assert np.abs(albedo.astype(float) / 255 - 0.25).mean() < 0.05  # the edited pixels, not the photo
