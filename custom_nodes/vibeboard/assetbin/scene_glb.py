"""Scene GLB: one glTF node per object (its 4-DoF pose as the node transform), metres, PBR textures.

Written with trimesh (the field's default); read back and checked with pygltflib, which exposes the glTF
material slots exactly as stored (trimesh re-interprets some of them on load).
"""
from __future__ import annotations

import io

import numpy as np

from .geometry import yaw_matrix


def _require():
    try:
        import pygltflib  # noqa: F401
        import trimesh  # noqa: F401
    except ImportError as exc:
        raise ImportError("the scene GLB needs trimesh and pygltflib: pip install vibeboard[assets]") from exc


def pose_matrix(yaw: float, translation, scale: float) -> np.ndarray:
    """4×4 node transform: scale, then yaw about +Y, then translate (x, y, z)."""
    m = np.eye(4)
    m[:3, :3] = yaw_matrix(yaw).numpy() * float(scale)
    m[:3, 3] = np.asarray(translation, dtype=np.float64)
    return m


def _pil(array: np.ndarray):
    from PIL import Image

    return Image.fromarray(np.ascontiguousarray(array))


def build_scene(objects: list, extras: dict | None = None):
    """objects: dicts with name, vertices [V,3] (local), faces [F,3], uv [V,2] (0..1, v down, the texture's
    own coords), pose (4×4), and optional textures: base_color / metallic_roughness / normal (uint8 HxWx3).
    Returns a trimesh.Scene."""
    _require()
    import trimesh
    from trimesh.visual.material import PBRMaterial
    from trimesh.visual.texture import TextureVisuals

    scene = trimesh.Scene()
    names = set()
    for obj in objects:
        name = str(obj["name"])
        if name in names:
            raise ValueError(f"two objects named {name!r}")
        names.add(name)
        verts = np.asarray(obj["vertices"], dtype=np.float64)
        faces = np.asarray(obj["faces"], dtype=np.int64)
        mesh = trimesh.Trimesh(vertices=verts, faces=faces, process=False)
        tex = obj.get("textures") or {}
        if tex:
            material = PBRMaterial(
                name=f"{name}_material",
                baseColorTexture=_pil(tex["base_color"]) if "base_color" in tex else None,
                metallicRoughnessTexture=_pil(tex["metallic_roughness"]) if "metallic_roughness" in tex else None,
                normalTexture=_pil(tex["normal"]) if "normal" in tex else None,
                metallicFactor=1.0, roughnessFactor=1.0, doubleSided=True)
            uv = np.asarray(obj["uv"], dtype=np.float64).copy()
            uv[:, 1] = 1.0 - uv[:, 1]  # trimesh stores OpenGL UVs (v up) and flips them back on export
            mesh.visual = TextureVisuals(uv=uv, material=material)
        scene.add_geometry(mesh, node_name=name, geom_name=name, transform=np.asarray(obj["pose"]))
    if extras:
        scene.metadata["extras"] = extras
    return scene


def export_glb(objects: list, path: str, extras: dict | None = None) -> str:
    scene = build_scene(objects, extras)
    data = scene.export(file_type="glb")
    with open(path, "wb") as handle:
        handle.write(data)
    return path


def _image_bytes(gltf, image_index: int) -> bytes:
    img = gltf.images[image_index]
    view = gltf.bufferViews[img.bufferView]
    blob = gltf.binary_blob()
    return blob[view.byteOffset or 0:(view.byteOffset or 0) + view.byteLength]


def read_texture(gltf, texture_index: int) -> np.ndarray:
    from PIL import Image

    tex = gltf.textures[texture_index]
    return np.asarray(Image.open(io.BytesIO(_image_bytes(gltf, tex.source))).convert("RGB"))


def inspect_glb(path: str) -> dict:
    """What a GLB holds, read with pygltflib: per mesh node its name, transform, material slots (and
    textures as uint8 arrays when asked)."""
    _require()
    import pygltflib

    gltf = pygltflib.GLTF2().load(path)
    nodes = []
    for node in gltf.nodes:
        if node.mesh is None:
            continue
        mesh = gltf.meshes[node.mesh]
        mat_index = mesh.primitives[0].material
        slots = {}
        if mat_index is not None:
            mat = gltf.materials[mat_index]
            pbr = mat.pbrMetallicRoughness
            if pbr is not None and pbr.baseColorTexture is not None:
                slots["base_color"] = pbr.baseColorTexture.index
            if pbr is not None and pbr.metallicRoughnessTexture is not None:
                slots["metallic_roughness"] = pbr.metallicRoughnessTexture.index
            if mat.normalTexture is not None:
                slots["normal"] = mat.normalTexture.index
        matrix = np.asarray(node.matrix, dtype=np.float64).reshape(4, 4).T if node.matrix else _trs(node)
        nodes.append({"name": node.name, "matrix": matrix, "textures": slots})
    return {"gltf": gltf, "nodes": nodes}


def _trs(node) -> np.ndarray:
    import trimesh.transformations as tf

    m = np.eye(4)
    if node.scale:
        m = np.diag(list(node.scale) + [1.0]) @ m
    if node.rotation:
        x, y, z, w = node.rotation
        m = tf.quaternion_matrix([w, x, y, z]) @ m
    if node.translation:
        m[:3, 3] += node.translation
    return m


def world_boxes(path: str) -> dict:
    """name → (min, max) world axis-aligned box of each mesh node, from the file as trimesh re-opens it."""
    _require()
    import trimesh

    scene = trimesh.load(path, force="scene")
    out = {}
    for node_name in scene.graph.nodes_geometry:
        transform, geom = scene.graph[node_name]
        pts = trimesh.transform_points(scene.geometry[geom].vertices, transform)
        out[node_name] = (pts.min(0), pts.max(0))
    return out
