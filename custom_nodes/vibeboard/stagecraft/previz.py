"""Previz animatic without a renderer: a small z-buffer rasteriser (NumPy) that draws the blocking's grey-box
set — a tiled floor, props as boxes, actors as upright coloured boxes facing their way, and optionally the
Asset Bin scene GLB — through each shot's camera (pinhole with the document's lens) and writes an MP4.
Runs headless on CPU with no GPU, no OpenGL and no Blender (Blender stays an optional extra for pretty
renders). Perspective-correct depth: 1/z is interpolated in screen space.
"""
from __future__ import annotations

import colorsys

import numpy as np

from .blocking import Blocking

NEAR = 0.05
FLOOR_TILE = 1.0
FLOOR_COLOURS = ((0.62, 0.62, 0.62), (0.5, 0.5, 0.5))
PROP_COLOUR = (0.72, 0.62, 0.45)
BACKGROUND = (0.16, 0.17, 0.2)
_BOX_FACES = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                       [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])


def actor_colour(index: int) -> tuple:
    return colorsys.hsv_to_rgb((0.08 + 0.37 * index) % 1.0, 0.75, 0.95)


def box_triangles(corners: np.ndarray) -> np.ndarray:
    """8 corners ordered (x-, z-, y) as Blocking.actor_box gives them → 12 triangles [12, 3, 3]."""
    return corners[_BOX_FACES]


def _prop_corners(p: dict) -> np.ndarray:
    sx, sy, sz = (float(v) for v in p.get("size", (0.5, 0.5, 0.5)))
    yaw = np.radians(float(p.get("yaw", 0.0)))
    c, s = np.cos(yaw), np.sin(yaw)
    rot = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    local = np.array([[x, y, z] for x in (-sx / 2, sx / 2) for z in (-sz / 2, sz / 2) for y in (0.0, sy)])
    return local @ rot.T + np.array([p["position"][0], 0.0, p["position"][1]])


def floor_triangles(size) -> tuple:
    w, d = (float(v) for v in size)
    tris, cols = [], []
    nx, nz = max(1, int(np.ceil(w / FLOOR_TILE))), max(1, int(np.ceil(d / FLOOR_TILE)))
    for i in range(nx):
        for j in range(nz):
            x0, z0 = -w / 2 + i * FLOOR_TILE, -d + j * FLOOR_TILE  # the set runs from z = 0 back to z = -depth
            x1, z1 = min(x0 + FLOOR_TILE, w / 2), min(z0 + FLOOR_TILE, 0.0)
            a, b, c, e = [x0, 0, z0], [x1, 0, z0], [x1, 0, z1], [x0, 0, z1]
            tris += [[a, c, b], [a, e, c]]
            cols += [FLOOR_COLOURS[(i + j) % 2]] * 2
    return np.array(tris, float), np.array(cols, float)


def glb_triangles(path: str) -> tuple:
    """World triangles and per-triangle colours of a GLB (node transforms applied; colour = the material's
    base colour factor, or the mean of its base colour texture, else grey)."""
    try:
        import trimesh
    except ImportError as exc:
        raise ImportError("loading a set GLB needs trimesh: pip install vibeboard[assets]") from exc
    scene = trimesh.load(path, force="scene")
    tris, cols = [], []
    for node in scene.graph.nodes_geometry:
        transform, geom = scene.graph[node]
        mesh = scene.geometry[geom]
        if not hasattr(mesh, "faces"):
            continue
        v = trimesh.transform_points(mesh.vertices, transform)
        colour = np.array([0.7, 0.7, 0.7])
        mat = getattr(mesh.visual, "material", None)
        tex = getattr(mat, "baseColorTexture", None)
        if tex is not None:
            colour = np.asarray(tex.convert("RGB"), float).reshape(-1, 3).mean(0) / 255.0
        elif getattr(mat, "baseColorFactor", None) is not None:
            colour = np.asarray(mat.baseColorFactor[:3], float) / (255.0 if max(mat.baseColorFactor[:3]) > 1 else 1)
        tris.append(v[mesh.faces])
        cols.append(np.repeat(colour[None], len(mesh.faces), 0))
    if not tris:
        return np.zeros((0, 3, 3)), np.zeros((0, 3))
    return np.concatenate(tris), np.concatenate(cols)


def scene_at(doc: Blocking, frame: int, set_tris=None, hide=()) -> tuple:
    """(triangles [T, 3, 3], colours [T, 3], object ids [T]: 0 set, 1.. actors in document order)."""
    size = doc.data["set"].get("size", [8.0, 8.0])
    tris, cols = floor_triangles(size)
    ids = [np.zeros(len(tris), int)]
    parts_t, parts_c = [tris], [cols]
    if set_tris is not None and len(set_tris[0]):
        parts_t.append(set_tris[0])
        parts_c.append(set_tris[1])
        ids.append(np.zeros(len(set_tris[0]), int))
    for p in doc.data["set"]["props"]:
        parts_t.append(box_triangles(_prop_corners(p)))
        parts_c.append(np.repeat(np.array([PROP_COLOUR]), 12, 0))
        ids.append(np.zeros(12, int))
    for i, name in enumerate(doc.actor_names()):
        if name in hide:
            continue
        parts_t.append(box_triangles(doc.actor_box(name, frame)))
        parts_c.append(np.repeat(np.array([actor_colour(i)]), 12, 0))
        ids.append(np.full(12, i + 1))
    return np.concatenate(parts_t), np.concatenate(parts_c), np.concatenate(ids)


def rasterize(tris: np.ndarray, colours: np.ndarray, ids: np.ndarray, c2w: np.ndarray, k: tuple, width: int,
              height: int) -> tuple:
    """(image [H, W, 3] float 0..1, id buffer [H, W] int, -1 = background)."""
    w2c = np.linalg.inv(c2w)
    cam = tris @ w2c[:3, :3].T + w2c[:3, 3]
    keep = (cam[..., 2] > NEAR).all(1)  # whole-triangle near clipping; floors are tiled so little is lost
    cam, colours, ids = cam[keep], colours[keep], ids[keep]
    fx, fy, cx, cy = k
    px = np.stack([cam[..., 0] / cam[..., 2] * fx + cx, cam[..., 1] / cam[..., 2] * fy + cy], -1)
    inv_z = 1.0 / cam[..., 2]
    normals = np.cross(cam[:, 1] - cam[:, 0], cam[:, 2] - cam[:, 0])
    normals /= np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-12)
    light = np.array([0.3, -0.8, -0.5])
    light /= np.linalg.norm(light)
    shade = 0.45 + 0.55 * np.abs(normals @ light)
    image = np.empty((height, width, 3))
    image[:] = BACKGROUND
    zbuf = np.zeros((height, width))  # stores 1/z: bigger = nearer, 0 = empty
    idbuf = np.full((height, width), -1, int)
    for t in range(len(px)):
        p = px[t]
        x0, x1 = max(int(np.floor(p[:, 0].min())), 0), min(int(np.ceil(p[:, 0].max())), width - 1)
        y0, y1 = max(int(np.floor(p[:, 1].min())), 0), min(int(np.ceil(p[:, 1].max())), height - 1)
        if x0 > x1 or y0 > y1:
            continue
        ys, xs = np.mgrid[y0:y1 + 1, x0:x1 + 1]
        (ax, ay), (bx, by), (qx, qy) = p
        area = (bx - ax) * (qy - ay) - (by - ay) * (qx - ax)
        if abs(area) < 1e-12:
            continue
        w0 = ((bx - xs) * (qy - ys) - (by - ys) * (qx - xs)) / area
        w1 = ((qx - xs) * (ay - ys) - (qy - ys) * (ax - xs)) / area
        w2 = 1.0 - w0 - w1
        inside = (w0 >= 0) & (w1 >= 0) & (w2 >= 0)
        if not inside.any():
            continue
        iz = w0 * inv_z[t, 0] + w1 * inv_z[t, 1] + w2 * inv_z[t, 2]
        region = zbuf[y0:y1 + 1, x0:x1 + 1]
        win = inside & (iz > region)
        region[win] = iz[win]
        image[y0:y1 + 1, x0:x1 + 1][win] = colours[t] * shade[t]
        idbuf[y0:y1 + 1, x0:x1 + 1][win] = ids[t]
    return image, idbuf


def render_shot(doc, shot, width: int | None = None, height: int | None = None, set_glb: str | None = None,
                on_frame=None, hide=()) -> tuple:
    """Frames [T, H, W, 3] float32 and id buffers [T, H, W] of one shot at the document's (or given) size."""
    doc = Blocking.parse(doc)
    s = doc.shot(shot)
    w, h = int(width or doc.data["width"]), int(height or doc.data["height"])
    set_tris = glb_triangles(set_glb) if set_glb else None
    k = doc.intrinsics(s["camera"], w, h)
    frames, id_frames = [], []
    for i, f in enumerate(doc.shot_frames(s["name"])):
        tris, cols, ids = scene_at(doc, f, set_tris, hide)
        img, idb = rasterize(tris, cols, ids, doc.camera_c2w(s["camera"], f), k, w, h)
        frames.append(img.astype(np.float32))
        id_frames.append(idb)
        if on_frame is not None:
            on_frame(i)
    return np.stack(frames), np.stack(id_frames)


def write_animatic(doc, path: str, width: int | None = None, height: int | None = None,
                   set_glb: str | None = None, on_frame=None) -> dict:
    """All shots in order, cut together, as an H.264 MP4 at the document's fps."""
    from ..media.video import write_video

    doc = Blocking.parse(doc)
    shots = [render_shot(doc, s["name"], width, height, set_glb)[0] for s in doc.data["shots"]]
    frames = np.concatenate(shots)
    summary = write_video(path, frames, doc.fps, on_frame=on_frame)
    summary["shots"] = [{"name": s["name"], "camera": s["camera"], "frames": len(f),
                         "hfov_deg": doc.hfov(s["camera"])} for s, f in zip(doc.data["shots"], shots)]
    return summary
