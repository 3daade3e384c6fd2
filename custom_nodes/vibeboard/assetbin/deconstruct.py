""""Deconstruct scene": one photo (+ metric depth) → a scene GLB with one node per object, in metres.

3D-RE-GEN's method, staged and resumable. Every stage is cached (stage_cache.py) and re-runs only when its
own settings or an upstream stage change:

  camera    depth + intrinsics → point cloud; floor plane (RANSAC) → world frame (Y up, floor y = 0)
  masks     instance masks: SAM (sam_masks.py, weights) or the weights-free geometric split (segment.py)
  inpaint   occluded objects and the empty room: Qwen-Image-Edit (vfx/qwen_edit.py, weights) — upstream
            calls a paid Gemini API here; without a model the photo is used as is (recorded as "none")
  meshes    per-object mesh: depth-lifted (visible surface extruded to the floor; weights-free default)
  layout    4-DoF ground-plane pose per object (layout_fit.py for meshes made in their own frame; a
            depth-lifted mesh gets its pose from its footprint's minimum-area rectangle)
  materials PBR maps per object (Marigold/MVInverse maps when given, else photo albedo + constants) and
            a tangent-space normal map from depth (pbr.py)
  glb       scene GLB (scene_glb.py)
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import torch

from . import geometry, pbr, scene_glb, segment
from .stage_cache import StageCache, digest

STAGES = ("camera", "masks", "inpaint", "meshes", "layout", "materials", "glb")


@dataclass
class Settings:
    fov_deg: float = 60.0                # horizontal FOV (ignored when intrinsics are given)
    floor_threshold_m: float = 0.02
    min_object_pixels: int = 40
    object_prompt: str = "Show the complete {name}, restoring any part hidden by other objects."
    room_prompt: str = "Remove all furniture and objects; show the empty room."
    inpaint_steps: int = 30
    inpaint_seed: int = 0
    mesh_stride: int = 1
    roughness: float = 0.8
    metallic: float = 0.0
    normal_smoothing_px: int = 2
    fit_yaw_starts: int = 8              # 4-DoF fit of generated meshes: yaw starts and points used
    fit_points: int = 300
    names: list = field(default_factory=list)  # object names in left-to-right order; default object_1…


@dataclass
class Result:
    glb_path: str
    objects: list            # dicts: name, yaw_deg, translation, scale, box_min, box_max, pixels
    masks: torch.Tensor      # [K, H, W] bool
    points: torch.Tensor     # [H, W, 3] world
    intrinsics: tuple
    cam_to_world: torch.Tensor
    models: list             # which models made it (for licence propagation)
    stages: list             # (stage, "ran" | "cached")


def _object_names(settings: Settings, count: int) -> list:
    names = [str(n).strip() for n in settings.names if str(n).strip()][:count]
    names += [f"object_{i + 1}" for i in range(len(names), count)]
    seen = {}
    out = []
    for n in names:  # GLB node names must be unique
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}_{seen[n]}")
    return out


def _crop_box(mask: torch.Tensor, margin: int = 2) -> tuple:
    ys, xs = mask.nonzero(as_tuple=True)
    h, w = mask.shape
    return (max(int(ys.min()) - margin, 0), min(int(ys.max()) + margin + 1, h),
            max(int(xs.min()) - margin, 0), min(int(xs.max()) + margin + 1, w))


class Deconstructor:
    """Runs the stages. `sam` (sam_masks.SamMasker), `qwen` (a loaded Qwen-Image-Edit pipeline) and
    `maps` (full-image dict albedo/roughness/metallic from Marigold or MVInverse, plus "models") are optional;
    each one missing falls back to the weights-free path, which the result's `models` list records."""

    def __init__(self, cache_root: str, sam=None, qwen=None, maps: dict | None = None, generator=None):
        self.cache = StageCache(cache_root)
        self.sam, self.qwen, self.maps = sam, qwen, maps
        # image-to-3D model: generator(image crop [h, w, 3], mask crop [h, w]) -> (vertices [V, 3] in its own
        # frame, Y up; faces [F, 3]; uv [V, 2] into that crop, v down); `generator.identity` names it
        self.generator = generator

    def run(self, image: torch.Tensor, depth: torch.Tensor, settings: Settings = Settings(), intrinsics=None,
            out_path: str | None = None, force: tuple = ()) -> Result:
        if image.ndim != 3 or image.shape[-1] < 3:
            raise ValueError(f"image must be [H, W, 3]; got {tuple(image.shape)}")
        if depth.shape != image.shape[:2]:
            raise ValueError(f"depth is {tuple(depth.shape)} but the image is {tuple(image.shape[:2])}")
        if not torch.isfinite(depth).all() or float(depth.min()) <= 0:
            raise ValueError("depth must be metric and positive everywhere (metres, bigger = farther)")
        self.cache.log.clear()
        h, w = depth.shape
        self._image_size = (h, w)
        k = tuple(float(v) for v in intrinsics) if intrinsics is not None else geometry.intrinsics_from_fov(
            w, h, settings.fov_deg)
        image = image[..., :3].float().contiguous()
        depth = depth.float().contiguous()
        models = ["depth (given)"]

        cam_key, cam, _ = self.cache.run("camera", 1, {"k": k, "thr": settings.floor_threshold_m},
                                         [digest(depth)], lambda: self._camera(depth, k, settings),
                                         "camera" in force)
        points = cam["points"]
        sam_id = getattr(self.sam, "identity", None)
        mask_key, m, _ = self.cache.run("masks", 1, {"sam": sam_id, "min_px": settings.min_object_pixels},
                                        [cam_key, digest(image)], lambda: self._masks(image, points, depth, settings),
                                        "masks" in force)
        masks = m["masks"].bool()
        names = _object_names(settings, len(masks))
        if sam_id:
            models.append(f"sam:{sam_id}")
        qwen_id = getattr(self.qwen, "vibeboard_identity", "qwen-image-edit") if self.qwen is not None else None
        inpaint_settings = {"model": qwen_id, "object_prompt": settings.object_prompt,
                            "room_prompt": settings.room_prompt, "steps": settings.inpaint_steps,
                            "seed": settings.inpaint_seed, "names": names}
        inp_key, inp, _ = self.cache.run("inpaint", 1, inpaint_settings, [mask_key, digest(image)],
                                         lambda: self._inpaint(image, masks, names, settings), "inpaint" in force)
        if qwen_id:
            models.append(f"qwen-image-edit:{qwen_id}")
        gen_id = getattr(self.generator, "identity", "image-to-3d") if self.generator is not None else None
        mesh_key, meshes, _ = self.cache.run("meshes", 1, {"stride": settings.mesh_stride,
                                                           "method": gen_id or "depth-lifted"},
                                             [inp_key, cam_key], lambda: self._meshes(points, masks, inp["objects"]),
                                             "meshes" in force)
        if gen_id:
            models.append(gen_id)
        lay_settings = {"method": "fit-4dof", "starts": settings.fit_yaw_starts, "points": settings.fit_points} \
            if gen_id else {"method": "footprint"}
        lay_key, lay, _ = self.cache.run("layout", 1, lay_settings, [mesh_key, cam_key],
                                         lambda: self._layout(meshes, len(masks), points, masks, settings),
                                         "layout" in force)
        map_id = None if self.maps is None else digest({k2: v for k2, v in self.maps.items() if k2 != "models"})
        mat_settings = {"rough": settings.roughness, "metal": settings.metallic, "maps": map_id,
                        "smooth": settings.normal_smoothing_px}
        mat_key, mats, _ = self.cache.run("materials", 1, mat_settings, [inp_key, cam_key, mesh_key],
                                          lambda: self._materials(inp, depth, k, meshes, masks, settings),
                                          "materials" in force)
        if self.maps is not None:
            models += list(self.maps.get("models", ["material maps (given)"]))
        glb_settings = {"names": names, "models": models}
        self._scratch = []
        try:
            _, _, glb_info = self.cache.run("glb", 1, glb_settings, [lay_key, mat_key],
                                            lambda: self._glb(meshes, lay, mats, names, models), "glb" in force)
        finally:
            import shutil
            for folder in self._scratch:
                shutil.rmtree(folder, ignore_errors=True)
        glb_path = glb_info["files"]["scene"]
        if out_path:
            import shutil
            shutil.copyfile(glb_path, out_path)
            glb_path = out_path
        objects = []
        for i, name in enumerate(names):
            yaw, tx, tz, scale, ty = (float(v) for v in lay["pose"][i])
            objects.append({"name": name, "yaw_deg": math.degrees(yaw), "translation": (tx, ty, tz), "scale": scale,
                            "box_min": lay["box_min"][i].tolist(), "box_max": lay["box_max"][i].tolist(),
                            "pixels": int(masks[i].sum())})
        return Result(glb_path, objects, masks, points, k, cam["cam_to_world"], models, list(self.cache.log))

    # --- stages -----------------------------------------------------------------------------------
    def _camera(self, depth, k, settings):
        cam_pts = geometry.unproject(depth, k)
        flat = cam_pts.reshape(-1, 3)
        normal, offset, _ = geometry.fit_plane_ransac(flat, threshold=settings.floor_threshold_m,
                                                      normal_hint=(0.0, -1.0, 0.0), max_angle_deg=60.0)
        c2w = geometry.world_from_camera(normal, offset)
        points = geometry.transform_points(c2w, flat).reshape(cam_pts.shape).float()
        meta = {"camera_height_m": offset, "floor_normal_cam": normal.tolist()}
        return {"points": points, "cam_to_world": c2w}, meta

    def _masks(self, image, points, depth, settings):
        if self.sam is not None:
            masks = self.sam.instances(image, min_pixels=settings.min_object_pixels)
            # SAM also segments the floor and walls: keep the masks that stand above the floor
            keep = [mk for mk in masks if float((points[..., 1][mk] > 0.03).float().mean()) > 0.5]
            masks = torch.stack(keep) if keep else torch.zeros(0, *depth.shape, dtype=torch.bool)
            method = "sam"
        else:
            masks = segment.geometric_instances(points, depth, min_pixels=settings.min_object_pixels)
            method = "geometric"
        if len(masks) == 0:
            raise ValueError("no objects found standing on the floor (check the depth and field of view)")
        masks = segment.order_left_to_right(masks)
        return {"masks": masks.to(torch.uint8)}, {"method": method, "count": len(masks)}

    def _inpaint(self, image, masks, names, settings):
        objects, room = [], image
        if self.qwen is not None:
            from ..vfx.qwen_edit import edit
            from scipy import ndimage

            for mask, name in zip(masks, names):
                grown = torch.from_numpy(ndimage.binary_dilation(mask.numpy(), iterations=8)).float()[None]
                prompt = settings.object_prompt.format(name=name)
                objects.append(edit(self.qwen, [image], prompt, steps=settings.inpaint_steps,
                                    seed=settings.inpaint_seed, mask=grown)[0])
            union = torch.from_numpy(ndimage.binary_dilation(masks.any(0).numpy(), iterations=8)).float()[None]
            room = edit(self.qwen, [image], settings.room_prompt, steps=settings.inpaint_steps,
                        seed=settings.inpaint_seed, mask=union)[0]
            method = "qwen-image-edit"
        else:
            objects = [image for _ in names]
            method = "none (no inpainting model: occluded parts stay as photographed)"
        return {"objects": torch.stack(objects).float(), "room": room.float()}, {"method": method}

    def _meshes(self, points, masks, object_images):
        out = {}
        for i, mask in enumerate(masks):
            if self.generator is not None:
                y0, y1, x0, x1 = _crop_box(mask)
                verts, faces, uv = self.generator(object_images[i][y0:y1, x0:x1], mask[y0:y1, x0:x1])
                verts, faces, uv = (torch.as_tensor(v) for v in (verts, faces, uv))
                h, w = mask.shape
                # the generator's UVs address its crop: store them in whole-image coordinates like ours
                uv = torch.stack([(uv[:, 0] * (x1 - x0) + x0) / w, (uv[:, 1] * (y1 - y0) + y0) / h], -1)
            else:
                verts, faces, uv = geometry.lifted_mesh(points, mask, floor_y=0.0)
            out[f"{i}.vertices"], out[f"{i}.faces"] = verts.float(), faces.long()
            out[f"{i}.uv"] = uv.float()
        return out, {"method": "generator" if self.generator is not None else "depth-lifted", "count": len(masks)}

    def _layout(self, meshes, count, points, masks, settings):
        poses, local, lo, hi = [], {}, [], []
        for i in range(count):
            verts = meshes[f"{i}.vertices"].double()
            if self.generator is not None:
                # a generated mesh lives in its own frame: fit yaw, floor position and scale to the object's
                # observed points, its lowest point on the floor (3D-RE-GEN's 4-DoF ground-plane constraint)
                from .layout_fit import fit_4dof

                # one photo shows part of the object: weight seen-point → mesh distances over the reverse
                pose = fit_4dof(verts, points[masks[i]].double(), floor_y=0.0, yaw_starts=settings.fit_yaw_starts,
                                max_points=settings.fit_points, source_weight=0.1)
                yaw, cx, cz, scale, cy = pose.yaw, pose.x, pose.z, pose.scale, pose.y
                local_verts = verts
            else:
                yaw, (cx, cz), _ = geometry.footprint_pose(verts)
                scale, cy = 1.0, 0.0
                centre = torch.tensor([cx, 0.0, cz], dtype=torch.float64)
                local_verts = (verts - centre) @ geometry.yaw_matrix(yaw)  # world = rot · local + centre
            world = (local_verts * scale) @ geometry.yaw_matrix(yaw).T + torch.tensor([cx, cy, cz],
                                                                                     dtype=torch.float64)
            local[f"{i}.local"] = local_verts.float()
            poses.append([yaw, cx, cz, scale, cy])
            lo.append(world.amin(0))
            hi.append(world.amax(0))
        tensors = {"pose": torch.tensor(poses, dtype=torch.float64).reshape(-1, 5),
                   "box_min": torch.stack(lo).float(), "box_max": torch.stack(hi).float(), **local}
        method = "4-DoF fit (layout_fit.py)" if self.generator is not None else "footprint (minimum-area rectangle)"
        return tensors, {"method": method}

    def _materials(self, inp, depth, k, meshes, masks, settings):
        normals = geometry.normals_from_depth(depth, k)
        base = pbr.smooth_normals(normals, settings.normal_smoothing_px)
        normal_tex = torch.from_numpy(pbr.encode_normal_map(normals, base))
        out = {}
        for i, mask in enumerate(masks):
            if self.maps is not None:
                maps = {n: self.maps[n].float() for n in ("albedo", "roughness", "metallic")}
            else:
                maps = pbr.default_maps(inp["objects"][i], settings.roughness, settings.metallic)
            y0, y1, x0, x1 = _crop_box(mask)
            out[f"{i}.base_color"] = torch.from_numpy(pbr.to_uint8(maps["albedo"][y0:y1, x0:x1]))
            out[f"{i}.metallic_roughness"] = torch.from_numpy(pbr.pack_metallic_roughness(
                maps["metallic"][y0:y1, x0:x1], maps["roughness"][y0:y1, x0:x1]))
            out[f"{i}.normal"] = normal_tex[y0:y1, x0:x1].contiguous()
            out[f"{i}.crop"] = torch.tensor([y0, y1, x0, x1])
        return out, {"maps": "given" if self.maps is not None else "photo albedo + constants",
                     "normals": "from depth"}

    def _glb(self, meshes, lay, mats, names, models):
        import tempfile

        h, w = self._image_size
        objects = []
        for i, name in enumerate(names):
            y0, y1, x0, x1 = (int(v) for v in mats[f"{i}.crop"])
            uv = meshes[f"{i}.uv"].double().clone()
            uv[:, 0] = (uv[:, 0] * w - x0) / (x1 - x0)
            uv[:, 1] = (uv[:, 1] * h - y0) / (y1 - y0)
            yaw, cx, cz, scale, cy = (float(v) for v in lay["pose"][i])
            objects.append({"name": name, "vertices": lay[f"{i}.local"].numpy(), "faces": meshes[f"{i}.faces"].numpy(),
                            "uv": uv.clamp(0, 1).numpy(), "pose": scene_glb.pose_matrix(yaw, (cx, cy, cz), scale),
                            "textures": {t: mats[f"{i}.{t}"].numpy() for t in ("base_color", "metallic_roughness",
                                                                                 "normal")}})
        tmp = tempfile.mkdtemp(prefix=".scratch-", dir=self.cache.root)  # the cache copies the file in
        self._scratch.append(tmp)
        path = scene_glb.export_glb(objects, os.path.join(tmp, "scene.glb"),
                                    extras={"generator": "VibeBoard Deconstruct scene", "units": "metres",
                                            "models": models})
        return {}, {"objects": names}, {"scene": path}


def deconstruct(image, depth, cache_root, settings: Settings = Settings(), **kwargs) -> Result:
    d = Deconstructor(cache_root, kwargs.pop("sam", None), kwargs.pop("qwen", None), kwargs.pop("maps", None),
                      kwargs.pop("generator", None))
    return d.run(image, depth, settings, **kwargs)
