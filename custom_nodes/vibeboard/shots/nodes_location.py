"""Location memory nodes (Spatia-style): a set's point cloud kept between generations, rendered for VACE."""
from __future__ import annotations

import os

import torch

from ..common import runtime
from . import spatia
from .node_utils import CATEGORY, data_dir, mtime, save_to_folder

LOCATION_TIP = "Location memory (the set's point cloud + stored frames)"


class VBLocationMemoryLoad:
    DESCRIPTION = ("Opens a set's location memory folder (point_cloud.ply + location.json + frames), or starts an "
                   "empty one there.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("VB_LOCATION", "INT")
    RETURN_NAMES = ("location", "points")
    OUTPUT_TOOLTIPS = ("the set's location memory", "number of points in its point cloud")
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "location_dir": ("STRING", {"default": "stories/my_film/sets/main",
                                        "tooltip": "Folder: absolute or relative to the output folder"}),
            "voxel_size": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 100.0, "step": 0.001,
                                     "tooltip": "Merge points closer than this (scene units; 0 = keep all)"}),
            "create_if_missing": ("BOOLEAN", {"default": True, "tooltip": "Start an empty memory when none exists"}),
        }}

    @classmethod
    def IS_CHANGED(cls, location_dir, **kwargs):
        try:
            return mtime(os.path.join(data_dir(runtime.node_label(VBLocationMemoryLoad), "location_dir", location_dir),
                                      "point_cloud.ply"))
        except Exception:
            return 0.0

    def load(self, location_dir, voxel_size, create_if_missing):
        node = runtime.node_label(VBLocationMemoryLoad)
        folder = data_dir(node, "location_dir", location_dir)
        if os.path.lexists(os.path.join(folder, "point_cloud.ply")):
            try:
                mem = spatia.LocationMemory.load(folder)
            except (ValueError, FileNotFoundError) as exc:  # damaged, or a link leading out of the folder
                raise runtime.NodeInputError(node, "location_dir", str(exc)) from None
        elif create_if_missing:
            mem = spatia.LocationMemory(path=folder)
        else:
            raise runtime.NodeInputError(node, "location_dir", f"no point_cloud.ply in {folder}")
        mem.voxel = float(voxel_size)
        return (mem, len(mem.cloud))


def _depth_values(depth: torch.Tensor, mode: str, scale: float) -> torch.Tensor:
    """IMAGE [N,H,W,C] or MASK [N,H,W] depth maps -> metric z [N,H,W] (0 = unknown)."""
    d = depth[..., 0] if depth.dim() == 4 else depth
    d = d.float()
    if mode == "inverse":  # disparity-like maps (near = bright), as most monocular estimators output
        return torch.where(d > 1e-4, scale / d.clamp_min(1e-4), torch.zeros_like(d))
    return d * scale


class VBLocationMemoryUpdate:
    DESCRIPTION = ("Adds frames to the set's point cloud from their depth maps and cameras (VB_CAMERA_PATH, OpenCV "
                   "camera-to-world) and stores them as reference frames; saves point_cloud.ply.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("VB_LOCATION", "INT")
    RETURN_NAMES = ("location", "points")
    OUTPUT_TOOLTIPS = ("the updated location memory (saved)", "number of points after the update")
    FUNCTION = "update"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "location": ("VB_LOCATION", {"tooltip": LOCATION_TIP}),
            "images": ("IMAGE", {"tooltip": "Frames of the set (a shot, or stills)"}),
            "depth": ("IMAGE", {"tooltip": "Depth map per frame (one map is reused for every frame)"}),
            "camera_path": ("VB_CAMERA_PATH", {"tooltip": "Camera of each frame (frame i of the path)"}),
        }, "optional": {
            "depth_mode": (["metric", "inverse"], {"default": "inverse",
                                                   "tooltip": "metric: z = value·scale; inverse: z = scale/value"}),
            "depth_scale": ("FLOAT", {"default": 1.0, "min": 1e-4, "max": 1e4, "step": 0.01,
                                      "tooltip": "Scene units per depth unit"}),
            "every_n_frames": ("INT", {"default": 16, "min": 1, "max": 1000, "tooltip": "Use every n-th frame"}),
            "pixel_stride": ("INT", {"default": 2, "min": 1, "max": 32, "tooltip": "Use every n-th pixel"}),
            "save": ("BOOLEAN", {"default": True, "tooltip": "Write the memory to its folder"}),
        }}

    def update(self, location, images, depth, camera_path, depth_mode="inverse", depth_scale=1.0,
               every_n_frames=16, pixel_stride=2, save=True):
        node = runtime.node_label(VBLocationMemoryUpdate)
        H, W = images.shape[1], images.shape[2]
        cams = camera_path.scaled_to(W, H) if hasattr(camera_path, "scaled_to") else camera_path
        z = _depth_values(depth, depth_mode, depth_scale)
        if z.shape[-2:] != (H, W):
            z = torch.nn.functional.interpolate(z[:, None], size=(H, W), mode="nearest")[:, 0]
        mem = spatia.LocationMemory(spatia.PointCloud(location.cloud.xyz, location.cloud.rgb),
                                    list(location.frames), list(location.cameras), location.voxel, location.path)
        n = min(images.shape[0], len(cams.c2w))
        if n == 0:
            raise runtime.NodeInputError(node, "camera_path", "no frames to add")
        for i in range(0, n, max(1, every_n_frames)):
            mem.add_frame(images[i], z[min(i, z.shape[0] - 1)], cams, i, stride=pixel_stride)
        if save and mem.path:
            try:
                mem.save(mem.path)
            except (ValueError, OSError) as exc:
                raise runtime.NodeInputError(node, "location", f"cannot save to {mem.path}: {exc}") from None
        return (mem, len(mem.cloud))


class VBLocationRender:
    DESCRIPTION = ("Location memory toggle: renders the set's point cloud along a new camera path (z-buffered "
                   "splatting) into a VACE control video + mask (0 where the set is known, 1 to generate), and picks "
                   "reference frames by camera-frustum overlap. Disabled: a blank control and an all-ones mask.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "MASK", "IMAGE", "MASK")
    RETURN_NAMES = ("control_video", "control_masks", "reference_images", "visibility")
    OUTPUT_TOOLTIPS = ("VACE control video rendered from the point cloud", "VACE masks: 0 where the set is known",
                       "reference frames chosen by frustum overlap",
                       "per-frame mask of where the point cloud covers the frame")
    FUNCTION = "render"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "location": ("VB_LOCATION", {"tooltip": LOCATION_TIP}),
            "camera_path": ("VB_CAMERA_PATH", {"tooltip": "Camera path of the new shot"}),
            "enabled": ("BOOLEAN", {"default": True, "tooltip": "Use the location memory for this shot"}),
        }, "optional": {
            "point_radius": ("INT", {"default": 1, "min": 0, "max": 8, "tooltip": "Splat size (pixels around)"}),
            "reference_count": ("INT", {"default": 2, "min": 1, "max": 8, "tooltip": "Reference frames to pick"}),
        }}

    def render(self, location, camera_path, enabled, point_radius=1, reference_count=2):
        F, H, W = len(camera_path.c2w), camera_path.height, camera_path.width
        from ..common import budget  # control video + masks, before rendering
        budget.check(runtime.node_label(VBLocationRender), "camera_path",
                     (F, H, W, 6), "the rendered control video and masks")
        if not enabled or len(location.cloud) == 0:
            blank = torch.full((F, H, W, 3), 0.5)
            return (blank, torch.ones(F, H, W), torch.full((1, H, W, 3), 0.5), torch.zeros(F, H, W))
        video, vis = spatia.render_path(location.cloud, camera_path, point_radius)
        video = torch.where(vis[..., None] > 0, video, torch.full_like(video, 0.5))
        refs = torch.full((1, H, W, 3), 0.5)
        ref_cams = location.reference_cameras()
        if ref_cams is not None:
            picked = spatia.select_reference_frames(location.cloud, ref_cams, camera_path, reference_count)
            if picked:
                from ..wan.conditioning import resize_bicubic as resize_images
                refs = torch.cat([resize_images(location.frames[i][None], H, W) for i in picked])
        return (video, 1.0 - vis, refs, vis)


class VBLocationMemorySave:
    DESCRIPTION = "Saves the location memory (point_cloud.ply, binary little-endian xyz + rgb) to a folder."
    CATEGORY = CATEGORY
    RETURN_TYPES = ()
    FUNCTION = "save"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"location": ("VB_LOCATION", {"tooltip": LOCATION_TIP})},
                "optional": {"location_dir": ("STRING", {"default": "", "tooltip": "Empty = its own folder"})}}

    def save(self, location, location_dir=""):
        return save_to_folder(location, runtime.node_label(VBLocationMemorySave), "location_dir", location_dir,
                              "point_cloud.ply")


NODE_CLASS_MAPPINGS = {
    "VBLocationMemoryLoad": VBLocationMemoryLoad,
    "VBLocationMemoryUpdate": VBLocationMemoryUpdate,
    "VBLocationRender": VBLocationRender,
    "VBLocationMemorySave": VBLocationMemorySave,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "VBLocationMemoryLoad": "Location Memory Load (VibeBoard)",
    "VBLocationMemoryUpdate": "Location Memory Update — Depth + Camera (VibeBoard)",
    "VBLocationRender": "Location Memory Render — Spatia (VibeBoard)",
    "VBLocationMemorySave": "Location Memory Save (VibeBoard)",
}
