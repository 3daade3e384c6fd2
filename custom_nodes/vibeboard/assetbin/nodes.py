"""Asset Bin nodes (thin): procedural room, SAM / Marigold loaders, Deconstruct scene → GLB, asset table.

Depth travels as a MASK [B, H, W] of metric values (metres, bigger = farther), as in the Optics Engine.
"""
from __future__ import annotations

import json
import os
import re
import shutil

import torch

from ..common.runtime import NodeInputError, node_label, output_directory, temp_directory, unique_output_path

CATEGORY = "VibeBoard/Asset Bin"


def _safe_name(text: str, default: str) -> str:
    """Free text → one file/folder name (never a path)."""
    return re.sub(r"[^\w-]+", "_", text or "").strip("_") or default


def _model_folder(node: str, input_name: str, value: str) -> str:
    from ..models.loaders import model_path  # the pack's one resolver for model paths typed into nodes

    return model_path(node, input_name, value, must_be_dir=True)


class VBSampleRoom:
    DESCRIPTION = ("A procedural room (floor, walls, three boxes at known poses) rendered with its metric depth: "
                   "the weights-free input for Deconstruct scene, with ground truth to check the result against.")
    CATEGORY = CATEGORY
    FUNCTION = "make"
    RETURN_TYPES = ("IMAGE", "MASK", "FLOAT", "STRING")
    RETURN_NAMES = ("image", "depth", "fov_deg", "ground_truth")
    OUTPUT_TOOLTIPS = ("the rendered room, float 0..1", "metric depth in metres per pixel",
                       "horizontal field of view of the render, degrees", "JSON: the boxes' true poses and sizes")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "width": ("INT", {"default": 256, "min": 64, "max": 2048, "step": 8, "tooltip": "Image width."}),
            "height": ("INT", {"default": 192, "min": 48, "max": 2048, "step": 8, "tooltip": "Image height."}),
            "fov_deg": ("FLOAT", {"default": 70.0, "min": 20.0, "max": 120.0, "tooltip": "Horizontal field of view."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1, "tooltip": "Noise seed of the render."}),
        }}

    def make(self, width, height, fov_deg, seed):
        from .sample_room import make_room

        room = make_room(width, height, fov_deg, seed=seed)
        truth = {n: {"min": a.tolist(), "max": b.tolist()} for n, (a, b) in room.true_boxes().items()}
        return (room.image[None], room.depth[None], float(fov_deg), json.dumps(truth))


class VBSamLoader:
    DESCRIPTION = ("Load SAM (facebook/sam-vit-huge, -large or -base) from a folder in the Hugging Face layout "
                   "(config.json, model.safetensors, preprocessor_config.json) for instance masks. Needs weights: "
                   "a SAM folder under models/ (facebook/sam-vit-*).")
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = ("VB_SAM",)
    RETURN_NAMES = ("sam",)
    OUTPUT_TOOLTIPS = ("the loaded SAM model, for Deconstruct scene's instance masks",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "folder": ("STRING", {"default": "sam/sam-vit-huge", "tooltip": "Folder under models/ (or absolute)."}),
            "points_per_side": ("INT", {"default": 16, "min": 2, "max": 64,
                                        "tooltip": "Prompt grid for 'everything' mode (n × n points)."}),
            "iou_threshold": ("FLOAT", {"default": 0.7, "min": 0.0, "max": 1.0, "step": 0.01,
                                        "tooltip": "Keep a mask when SAM's predicted IoU reaches this."}),
        }}

    def load(self, folder, points_per_side=16, iou_threshold=0.7):
        from .sam_masks import SamMasker

        node = node_label(VBSamLoader)
        path = _model_folder(node, "folder", folder)
        try:
            return (SamMasker(path, "cuda" if torch.cuda.is_available() else "cpu",
                              points_per_side=points_per_side, iou_threshold=iou_threshold),)
        except (FileNotFoundError, ValueError, OSError) as exc:
            raise NodeInputError(node, "folder", str(exc)) from None


class VBMarigoldMaps:
    DESCRIPTION = ("Single-image PBR maps with Marigold intrinsics (diffusers MarigoldIntrinsicsPipeline, "
                   "prs-eth/marigold-iid-appearance-v1-1 layout): albedo, roughness, metallic. Needs weights.")
    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES = ("VB_PBR_MAPS", "IMAGE")
    RETURN_NAMES = ("maps", "albedo")
    OUTPUT_TOOLTIPS = ("PBR maps (albedo, roughness, metallic) for Deconstruct scene", "albedo, float 0..1")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE", {"tooltip": "The photo (first image of the batch)."}),
            "folder": ("STRING", {"default": "diffusers/marigold-iid-appearance-v1-1",
                                  "tooltip": "diffusers folder under models/."}),
            "steps": ("INT", {"default": 4, "min": 1, "max": 50, "tooltip": "Denoising steps (1-4 typical)."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1, "tooltip": "Noise seed."}),
        }}

    def run(self, image, folder, steps, seed):
        from . import marigold_maps

        node = node_label(VBMarigoldMaps)
        path = _model_folder(node, "folder", folder)
        try:
            pipe = marigold_maps.load_pipeline(path, "cuda" if torch.cuda.is_available() else "cpu")
        except (FileNotFoundError, ValueError, OSError) as exc:
            raise NodeInputError(node, "folder", str(exc)) from None
        maps = marigold_maps.estimate(pipe, image[0], steps, seed)
        if "roughness" not in maps or "metallic" not in maps:
            raise NodeInputError(node, "folder", "this Marigold model predicts no roughness/metallic "
                                 "(use the -appearance model for PBR materials)")
        return (maps, maps["albedo"][None].clamp(0, 1))


class VBMVInverseMaps:
    DESCRIPTION = ("Multi-view PBR maps with MVInverse (maddog241/mvinverse; NON-COMMERCIAL): N views of one scene "
                   "→ albedo / metallic / roughness / normal per view; the chosen view's maps feed Deconstruct "
                   "scene. Needs the weights and the authors' package (the network is theirs); every asset made "
                   "from these maps is marked non-commercial.")
    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES = ("VB_PBR_MAPS", "IMAGE", "IMAGE")
    RETURN_NAMES = ("maps", "albedo", "normal")
    OUTPUT_TOOLTIPS = ("PBR maps of the chosen view (albedo, metallic, roughness, normal) for Deconstruct scene",
                       "albedo of every view, float 0..1", "normals of every view, mapped to 0..1")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "views": ("IMAGE", {"tooltip": "Views of one scene (a batch); the first is usually the photo."}),
            "checkpoint": ("STRING", {"default": "mvinverse", "tooltip": "HubMixin folder (config.json + "
                                      "model.safetensors) or the authors' .pt, under models/."}),
            "view": ("INT", {"default": 0, "min": 0, "max": 255, "tooltip": "Which view's maps to pass on."}),
        }}

    def run(self, views, checkpoint, view):
        from ..models.loaders import model_path
        from . import mvinverse

        node = node_label(VBMVInverseMaps)
        path = model_path(node, "checkpoint", checkpoint)
        if view >= views.shape[0]:
            raise NodeInputError(node, "view", f"view {view} of {views.shape[0]} views")
        try:
            model = mvinverse.load(path, "cuda" if torch.cuda.is_available() else "cpu")
        except (FileNotFoundError, ValueError) as exc:
            raise NodeInputError(node, "checkpoint", str(exc)) from None
        maps = mvinverse.estimate(model, views)
        picked = maps[view]
        normal_rgb = (torch.stack([m["normal"] for m in maps]) * 0.5 + 0.5).clamp(0, 1)
        return (picked, torch.stack([m["albedo"] for m in maps]), normal_rgb)


class VBDeconstructScene:
    DESCRIPTION = ("Deconstruct scene (3D-RE-GEN's method, staged and cached): photo + metric depth → instance "
                   "masks → inpainting → per-object meshes → 4-DoF floor layout → scene GLB (one node per object, "
                   "metres, PBR textures). Without SAM / Qwen-Image-Edit / maps it runs weights-free: geometric "
                   "masks, no inpainting, depth-lifted meshes, photo albedo. Changing a setting re-runs only "
                   "that stage and later ones.")
    CATEGORY = CATEGORY
    FUNCTION = "run"
    OUTPUT_NODE = True
    RETURN_TYPES = ("STRING", "MASK", "STRING")
    RETURN_NAMES = ("glb_path", "masks", "report")
    OUTPUT_TOOLTIPS = ("path of the scene GLB (one node per object, metres)", "one instance mask per object found",
                       "JSON report: objects, stages run or reused, what ran weights-free")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE", {"tooltip": "The photo (first image of the batch)."}),
            "depth": ("MASK", {"tooltip": "Metric depth in metres (bigger = farther), same size as the image."}),
            "fov_deg": ("FLOAT", {"default": 70.0, "min": 10.0, "max": 150.0,
                                  "tooltip": "Horizontal field of view of the photo."}),
            "scene_name": ("STRING", {"default": "room", "tooltip": "Names the stage cache and the output GLB."}),
            "object_names": ("STRING", {"default": "", "tooltip": "Comma-separated names, left to right."}),
            "object_prompt": ("STRING", {"default": "Show the complete {name}, restoring any part hidden by other "
                                                    "objects.", "multiline": True,
                                         "tooltip": "Inpaint instruction per object ({name} is filled in)."}),
            "room_prompt": ("STRING", {"default": "Remove all furniture and objects; show the empty room.",
                                       "multiline": True, "tooltip": "Inpaint instruction for the empty room."}),
            "inpaint_steps": ("INT", {"default": 30, "min": 1, "max": 100, "tooltip": "Qwen-Image-Edit steps."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1, "tooltip": "Inpaint seed."}),
        }, "optional": {
            "sam": ("VB_SAM", {"tooltip": "SAM for instance masks (else geometric masks)."}),
            "qwen_edit": ("VB_QWEN_EDIT", {"tooltip": "Qwen-Image-Edit for inpainting (else none)."}),
            "maps": ("VB_PBR_MAPS", {"tooltip": "PBR maps from Marigold Maps (else photo albedo + constants)."}),
        }}

    def run(self, image, depth, fov_deg, scene_name, object_names, object_prompt, room_prompt, inpaint_steps,
            seed, sam=None, qwen_edit=None, maps=None):
        from .deconstruct import Deconstructor, Settings

        node = node_label(VBDeconstructScene)
        d = depth[0] if depth.dim() == 3 else depth
        if d.shape != image.shape[1:3]:
            raise NodeInputError(node, "depth", f"depth is {d.shape[1]}x{d.shape[0]} but the image is "
                                 f"{image.shape[2]}x{image.shape[1]}")
        try:
            object_prompt.format(name="object")
        except (KeyError, IndexError, ValueError) as exc:
            raise NodeInputError(node, "object_prompt", f"bad placeholder ({exc}); only {{name}} is filled in, "
                                 "write {{ and }} for literal braces") from None
        name = _safe_name(scene_name, "scene")
        cache = os.path.join(temp_directory(), "vibeboard", "deconstruct", name)
        names = [n.strip() for n in object_names.split(",") if n.strip()]
        settings = Settings(fov_deg=fov_deg, object_prompt=object_prompt, room_prompt=room_prompt,
                            inpaint_steps=inpaint_steps, inpaint_seed=seed, names=names)
        try:
            result = Deconstructor(cache, sam, qwen_edit, maps).run(image[0], d, settings)
        except ValueError as exc:
            raise NodeInputError(node, "depth", str(exc)) from None
        path, subfolder, filename = unique_output_path(output_directory(), f"vibeboard/assets/{name}", "glb")
        shutil.copyfile(result.glb_path, path)
        # the scene's point cloud (world frame, metres, photo colours) for CustomX scene videos or other tools
        import trimesh

        ply, ply_sub, ply_name = unique_output_path(output_directory(), f"vibeboard/assets/{name}_points", "ply")
        colours = (image[0, ..., :3].reshape(-1, 3).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        trimesh.PointCloud(result.points.reshape(-1, 3).numpy(), colors=colours).export(ply)
        report = {"glb": filename, "points": ply_name, "objects": result.objects, "models": result.models,
                  "stages": result.stages}
        ui = {"files": [{"filename": filename, "subfolder": subfolder, "type": "output"},
                        {"filename": ply_name, "subfolder": ply_sub, "type": "output"}],
              "text": [f"{len(result.objects)} object(s); stages re-run: "
                       f"{', '.join(s for s, how in result.stages if how == 'ran') or 'none'}"]}
        return {"ui": ui, "result": (path, result.masks.float(), json.dumps(report, default=str))}


class VBAssetRegister:
    DESCRIPTION = ("Record a GLB in the asset table (SQLite in the output folder): kind, Script Lab element, "
                   "tags, scale, and the models that made it — its licence is the most restrictive of theirs. "
                   "With `commercial_project` on, an asset that is not licensed for commercial use stops the run.")
    CATEGORY = CATEGORY
    FUNCTION = "run"
    OUTPUT_NODE = True
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("asset",)
    OUTPUT_TOOLTIPS = ("the asset id in the project's asset table",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "report": ("STRING", {"forceInput": True, "tooltip": "The report of Deconstruct scene."}),
            "name": ("STRING", {"default": "room", "tooltip": "Asset name."}),
            "kind": (["scene", "prop", "set", "character", "material"], {"default": "scene", "tooltip": "Asset kind."}),
            "element_ref": ("STRING", {"default": "", "tooltip": "Script Lab element, scriptlab:<category>/<label> "
                                                                 "(e.g. scriptlab:props/COMPASS)."}),
            "tags": ("STRING", {"default": "", "tooltip": "Comma-separated tags."}),
            "commercial_project": ("BOOLEAN", {"default": False, "tooltip": "Stop on non-commercial assets."}),
        }, "optional": {
            "script_db": ("STRING", {"default": "", "tooltip": "Script Lab project database (.vbdb in the input "
                                                              "folder) to check element_ref against."}),
        }}

    def run(self, report, name, kind, element_ref, tags, commercial_project, script_db=""):
        from .assetdb import AssetDB, LicenceError, ScriptLabElements

        node = node_label(VBAssetRegister)
        link = None
        if script_db.strip():
            from ..common import runtime

            db_path = runtime.user_path(node, "script_db", script_db, runtime.input_directory())
            if not os.path.isfile(db_path):
                raise NodeInputError(node, "script_db", f"file not found: {db_path}")
            link = ScriptLabElements(db_path)
            if element_ref.strip() and link.element(element_ref.strip()) is None:
                raise NodeInputError(node, "element_ref", f"{element_ref!r} is not an element of {script_db}")
        try:
            data = json.loads(report)
            glb, models = data["glb"], list(data["models"])
        except (ValueError, KeyError, TypeError):
            raise NodeInputError(node, "report", "not a Deconstruct scene report") from None
        from PIL import Image

        from .thumbnail import render_thumbnail

        root = os.path.join(output_directory(), "vibeboard", "assets")
        glb_name = os.path.basename(str(glb).replace("\\", "/"))  # a file in the asset folder, never a path
        thumbs = []
        if os.path.isfile(os.path.join(root, glb_name)):
            thumb = os.path.splitext(glb_name)[0] + "_thumb.png"
            Image.fromarray(render_thumbnail(os.path.join(root, glb_name))).save(os.path.join(root, thumb))
            thumbs.append(thumb)
        db = AssetDB(os.path.join(root, "assets.sqlite"), root, link)
        try:
            asset_id = db.add_asset(name, kind, glb=glb_name, thumbnails=thumbs,
                                    tags=[t.strip() for t in tags.split(",") if t.strip()], scale_m=1.0,
                                    models=models, element_ref=element_ref.strip() or None)
            try:
                db.check_export([asset_id], commercial_project)
            except LicenceError as exc:
                raise NodeInputError(node, "commercial_project", str(exc)) from None
            asset = db.asset(asset_id)
        finally:
            db.close()
        text = json.dumps({k: asset[k] for k in ("id", "name", "kind", "glb", "thumbnails", "licence_class",
                                                  "licence_notes", "element_ref", "tags")})
        return {"ui": {"text": [f"{name}: licence {asset['licence_class']}"]}, "result": (text,)}


NODE_CLASS_MAPPINGS = {
    "VBSampleRoom": VBSampleRoom,
    "VBSamLoader": VBSamLoader,
    "VBMarigoldMaps": VBMarigoldMaps,
    "VBMVInverseMaps": VBMVInverseMaps,
    "VBDeconstructScene": VBDeconstructScene,
    "VBAssetRegister": VBAssetRegister,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "VBSampleRoom": "Sample Room — procedural RGB-D (VibeBoard)",
    "VBSamLoader": "SAM Loader (VibeBoard)",
    "VBMarigoldMaps": "Marigold Maps — PBR from one image (VibeBoard)",
    "VBMVInverseMaps": "MVInverse Maps — multi-view PBR, non-commercial (VibeBoard)",
    "VBDeconstructScene": "Deconstruct Scene → GLB (VibeBoard)",
    "VBAssetRegister": "Asset Register — licence-aware (VibeBoard)",
}
