"""Optics Engine nodes (thin): sample RGB-D scene, depth in/out, defocus map, bokeh render, rack focus.

Depth travels as a MASK [B, H, W] of raw values (metres can exceed 1); each consumer says how to read it
with `depth_convention`: metric (bigger = farther) or disparity (bigger = nearer, relative scale).
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from ..common import runtime
from . import bokeh, defocus, depth_estimation, focal_stack, sample_scene

CATEGORY = "VibeBoard/Optics Engine"
METRIC_LABEL = "metric (bigger = farther)"
DISPARITY_LABEL = "disparity (bigger = nearer)"
CONVENTION_LABELS = [METRIC_LABEL, DISPARITY_LABEL]
_CONVENTION = {METRIC_LABEL: defocus.METRIC, DISPARITY_LABEL: defocus.DISPARITY}
_LABEL = {v: k for k, v in _CONVENTION.items()}
FOCUS_MODES = ["point", "mask", "distance"]
SHAPES = ["disc", "polygon"]


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _convention(node: str, label: str) -> str:
    if label not in _CONVENTION:
        raise runtime.NodeInputError(node, "depth_convention", f"unknown convention {label!r}; "
                                     f"expected one of {CONVENTION_LABELS}")
    return _CONVENTION[label]


def _as_depth_batch(node: str, depth: torch.Tensor) -> torch.Tensor:
    if depth.dim() == 2:
        depth = depth.unsqueeze(0)
    if depth.dim() == 4 and depth.shape[-1] in (1, 3):  # an IMAGE wired in: take its first channel
        depth = depth[..., 0]
    if depth.dim() != 3:
        raise runtime.NodeInputError(node, "depth", f"expected a MASK [B, H, W], got shape {tuple(depth.shape)}")
    return depth.float()


def _match_depth(node: str, image: torch.Tensor, depth: torch.Tensor, resize: bool) -> torch.Tensor:
    """Depth batch aligned with the image batch and size (broadcast one map; resize only when asked)."""
    depth = _as_depth_batch(node, depth)
    b, h, w = image.shape[:3]
    if depth.shape[1:] != (h, w):
        if not resize:
            raise runtime.NodeInputError(
                node, "depth", f"depth is {depth.shape[2]}x{depth.shape[1]} but the image is {w}x{h}; "
                "turn on resize_depth_to_image or resize one of them")
        depth = F.interpolate(depth.unsqueeze(1), size=(h, w), mode="bilinear", align_corners=False)[:, 0]
    if depth.shape[0] not in (1, b):
        raise runtime.NodeInputError(node, "depth", f"{depth.shape[0]} depth maps for {b} images "
                                     "(give one map, or one per image)")
    return depth.expand(b, h, w) if depth.shape[0] == 1 else depth


def _check_image(node: str, image: torch.Tensor, name: str = "image") -> None:
    if image.dim() != 4 or image.shape[-1] < 3:
        raise runtime.NodeInputError(node, name, f"expected an IMAGE [B, H, W, 3], got {tuple(image.shape)}")


def _resolve_focus(node: str, inv: torch.Tensor, mode: str, x: float, y: float, distance: float,
                   mask, index: int) -> float:
    if mode == "mask":
        if mask is None:
            raise runtime.NodeInputError(node, "focus_mask", "focus_mode 'mask' needs a focus_mask connected")
        m = mask if mask.dim() == 3 else mask.unsqueeze(0)
        try:
            return defocus.focus_from_mask(inv, m[min(index, m.shape[0] - 1)])
        except ValueError as exc:
            raise runtime.NodeInputError(node, "focus_mask", str(exc)) from exc
    if mode == "point":
        return defocus.focus_from_point(inv, x, y)
    if mode == "distance":
        if distance <= 0:
            raise runtime.NodeInputError(node, "focus_distance", "must be > 0 in focus_mode 'distance'")
        return defocus.focus_from_distance(distance)
    raise runtime.NodeInputError(node, "focus_mode", f"unknown mode {mode!r}; expected one of {FOCUS_MODES}")


def _distance(focus_inv: float) -> float:
    return 1.0 / focus_inv if focus_inv > 0 else 1e9


def depth_preview(depth: torch.Tensor, convention: str) -> torch.Tensor:
    """Depth → viewable IMAGE: inverse depth normalised to 0..1, white = near."""
    inv = defocus.inverse_depth(depth, convention)
    lo, hi = float(inv.min()), float(inv.max())
    unit = (inv - lo) / (hi - lo) if hi > lo else torch.zeros_like(inv)
    return unit.unsqueeze(-1).repeat(1, 1, 1, 3)


def _lens(aperture_k, max_coc, aperture_shape, blades, rotation, linear_light) -> bokeh.LensSettings:
    return bokeh.LensSettings(aperture_k=float(aperture_k), max_coc=float(max_coc),
                              blades=int(blades) if aperture_shape == "polygon" else 0,
                              rotation_deg=float(rotation), linear_light=bool(linear_light))


_DEPTH_INPUTS = {
    "depth": ("MASK", {"tooltip": "Depth map (raw values; metres may exceed 1). One map, or one per image."}),
    "depth_convention": (CONVENTION_LABELS, {"default": METRIC_LABEL, "tooltip":
                         "metric: distance, bigger = farther (Depth Pro, the sample scene). disparity: "
                         "bigger = nearer, relative (Depth Anything V2); normalised so the nearest = 1."}),
}
_FOCUS_INPUTS = {
    "focus_mode": (FOCUS_MODES, {"default": "point", "tooltip":
                   "point: median depth around (focus_x, focus_y); mask: median depth under focus_mask; "
                   "distance: focus_distance in the depth's units."}),
    "focus_x": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01,
                          "tooltip": "Focus point, 0 = left edge, 1 = right edge."}),
    "focus_y": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01,
                          "tooltip": "Focus point, 0 = top edge, 1 = bottom edge."}),
    "focus_distance": ("FLOAT", {"default": 3.0, "min": 0.001, "max": 1e6, "step": 0.01,
                                 "tooltip": "Focal distance for focus_mode 'distance' (depth units)."}),
}
_LENS_INPUTS = {
    "aperture_k": ("FLOAT", {"default": 20.0, "min": 0.0, "max": 10000.0, "step": 0.5, "tooltip":
                   "Blur strength K: CoC diameter (px) = K·|1/depth − 1/focus|. K = 20 blurs a point 1 unit "
                   "away into a 20 px disc when focused at infinity."}),
    "max_coc": ("FLOAT", {"default": 64.0, "min": 1.0, "max": 512.0, "step": 1.0,
                          "tooltip": "Largest blur diameter in pixels (bigger blur is clamped)."}),
    "aperture_shape": (SHAPES, {"default": "disc", "tooltip": "Disc, or a polygon of `blades` blades."}),
    "blades": ("INT", {"default": 6, "min": 3, "max": 16, "tooltip": "Blade count for the polygon aperture."}),
    "rotation": ("FLOAT", {"default": 0.0, "min": -360.0, "max": 360.0, "step": 1.0,
                           "tooltip": "Polygon rotation in degrees (counter-clockwise)."}),
    "linear_light": ("BOOLEAN", {"default": True, "tooltip":
                     "Blur in linear light (sRGB ≈ gamma 2.2): highlights bloom into bright discs."}),
}


class VBSampleRGBDScene:
    DESCRIPTION = ("Procedural test scene with known metric depth: textured panels at 1 m, 3 m, 10 m and a "
                   "40 m wall with small lights. Deterministic from the seed.")
    CATEGORY = CATEGORY
    FUNCTION = "make"
    RETURN_TYPES = ("IMAGE", "MASK", "FLOAT", "FLOAT", "IMAGE")
    RETURN_NAMES = ("image", "depth", "near", "far", "depth_preview")
    OUTPUT_TOOLTIPS = ("the scene, float 0..1", "metric depth in metres per pixel", "nearest depth, metres",
                       "farthest depth, metres", "the depth as a grey image")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "width": ("INT", {"default": 768, "min": 16, "max": 8192, "step": 8, "tooltip": "Image width (px)."}),
            "height": ("INT", {"default": 432, "min": 16, "max": 8192, "step": 8, "tooltip": "Image height (px)."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFF, "tooltip": "Layout and texture seed."}),
        }}

    def make(self, width, height, seed):
        scene = sample_scene.make_scene(int(width), int(height), int(seed))
        preview = depth_preview(scene.depth.unsqueeze(0), defocus.METRIC)
        return scene.image.unsqueeze(0), scene.depth.unsqueeze(0), scene.near, scene.far, preview


class VBDepthFromImage:
    DESCRIPTION = ("Turn a depth picture (IMAGE or MASK) into metric depth for the Optics nodes, mapping its "
                   "0..1 values onto near..far.")
    CATEGORY = CATEGORY
    FUNCTION = "convert"
    RETURN_TYPES = ("MASK",)
    RETURN_NAMES = ("depth",)
    OUTPUT_TOOLTIPS = ("metric depth in metres per pixel",)
    ENCODINGS = ["white = near (disparity)", "white = far (depth)", "raw metric depth", "raw disparity"]

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "encoding": (cls.ENCODINGS, {"default": cls.ENCODINGS[0], "tooltip":
                         "How the picture stores depth. white = near: 0..1 maps linearly in 1/depth onto "
                         "far..near (Depth Anything pictures). white = far: 0..1 maps linearly onto near..far. "
                         "raw metric: values already are distances. raw disparity: 0..1 after normalising."}),
            "near": ("FLOAT", {"default": 1.0, "min": 0.001, "max": 1e6, "step": 0.01,
                               "tooltip": "Distance of the nearest value (depth units)."}),
            "far": ("FLOAT", {"default": 100.0, "min": 0.002, "max": 1e7, "step": 0.1,
                              "tooltip": "Distance of the farthest value (depth units)."}),
        }, "optional": {
            "image": ("IMAGE", {"tooltip": "Depth picture (its first channel is used)."}),
            "mask": ("MASK", {"tooltip": "Depth as a MASK (used when no image is connected)."}),
        }}

    def convert(self, encoding, near, far, image=None, mask=None):
        node = runtime.node_label(VBDepthFromImage)
        if image is None and mask is None:
            raise runtime.NodeInputError(node, "image", "connect an IMAGE or a MASK")
        values = _as_depth_batch(node, image[..., 0] if image is not None else mask)
        if encoding == "raw metric depth":
            return (values,)
        if near <= 0 or far <= near:
            raise runtime.NodeInputError(node, "far", f"need 0 < near < far (got near={near}, far={far})")
        if encoding == "white = far (depth)":
            return (near + values.clamp(0, 1) * (far - near),)
        if encoding == "raw disparity":
            return (depth_estimation.to_convention(values, defocus.DISPARITY, defocus.METRIC, near, far),)
        if encoding == "white = near (disparity)":
            inverse = 1.0 / far + values.clamp(0, 1) * (1.0 / near - 1.0 / far)
            return (1.0 / inverse,)
        raise runtime.NodeInputError(node, "encoding", f"unknown encoding {encoding!r}")


def _depth_folders() -> list:
    """Depth model folders present in any models/depth root, then the registry's names not pulled yet."""
    from ..models import registry

    present = []
    for root in registry.folder_dirs("depth"):
        if os.path.isdir(root):
            present += [n for n in sorted(os.listdir(root)) if os.path.isfile(os.path.join(root, n, "config.json"))]
    known = [rel.split(os.sep)[-1] for key in ("depth-anything-v2", "depth-pro")
             for source in registry.entry(key)["sources"] for _, rel in registry.local_targets(key, source)]
    return list(dict.fromkeys(present + known))


class VBDepthEstimate:
    DESCRIPTION = ("Estimate depth with Depth Anything V2 or Depth Pro (transformers) from models/depth/<folder> "
                   "(Hugging Face folder layout, safetensors). Needs weights: depth-anything-v2 or depth-pro "
                   "(vibeboard models pull <id>).")
    CATEGORY = CATEGORY
    FUNCTION = "estimate"
    # The convention output is typed as the consumers' depth_convention combo (not STRING), so it can be
    # wired into them: ComfyUI refuses a STRING link into a combo input ("Return type mismatch").
    RETURN_TYPES = ("MASK", CONVENTION_LABELS)
    RETURN_NAMES = ("depth", "depth_convention")
    OUTPUT_TOOLTIPS = ("depth per pixel in the stated convention", "which convention the depth output uses")
    OUTPUTS = ["model native", METRIC_LABEL, DISPARITY_LABEL]

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": (_depth_folders(), {"tooltip": "Folder under models/depth (e.g. Depth-Anything-V2-Small-hf, "
                                                    "DepthPro-hf) holding config.json + model.safetensors; "
                                                    "`vibeboard models pull depth-anything-v2` puts it there."}),
            "image": ("IMAGE", {"tooltip": "Images to estimate depth for."}),
            "output": (cls.OUTPUTS, {"default": "model native", "tooltip":
                       "model native: disparity for Depth Anything V2 (relative), metres for Depth Pro."}),
            "near": ("FLOAT", {"default": 1.0, "min": 0.001, "max": 1e6, "step": 0.01, "tooltip":
                               "Only for relative disparity → metric: distance given to the nearest pixel."}),
            "far": ("FLOAT", {"default": 100.0, "min": 0.002, "max": 1e7, "step": 0.1, "tooltip":
                              "Only for relative disparity → metric: distance given to the farthest pixel."}),
            "precision": (["auto", "fp32", "fp16", "bf16"], {"default": "auto",
                          "tooltip": "auto = fp16 on GPU, fp32 on CPU."}),
        }, "hidden": {"prompt": "PROMPT"}}

    def estimate(self, model, image, output, near, far, precision="auto", prompt=None):
        from ..models import preflight, registry

        node = runtime.node_label(VBDepthEstimate)
        _check_image(node, image)
        try:
            path = registry.resolve(model, "depth")
        except ValueError as exc:
            raise runtime.NodeInputError(node, "model", str(exc)) from exc
        if path is None or not os.path.isdir(path):
            preflight.raise_missing("VBDepthEstimate", "model", model, prompt, title=node)
        try:
            dm = depth_estimation.load(path, precision=precision)
        except depth_estimation.MissingWeights as exc:
            raise runtime.NodeInputError(node, "model", f"{exc}. Put the Hugging Face folder (e.g. "
                                         f"depth-anything/Depth-Anything-V2-Small-hf) at {path}") from exc
        except ValueError as exc:
            raise runtime.NodeInputError(node, "model", str(exc)) from exc
        bar = runtime.progress_bar(image.shape[0])
        depth = depth_estimation.estimate(dm, image, on_batch=bar.update)
        target = dm.convention if output == "model native" else _CONVENTION[output]
        try:
            depth = depth_estimation.to_convention(depth, dm.convention, target, near, far)
        except ValueError as exc:
            raise runtime.NodeInputError(node, "far", str(exc)) from exc
        return depth, _LABEL[target]


class VBDefocusMap:
    DESCRIPTION = ("GenFocus defocus map: clamp(|K·(1/depth − 1/d_focus)| / max_coc, 0, 1), focus from a "
                   "point, a mask or a distance.")
    CATEGORY = CATEGORY
    FUNCTION = "compute"
    RETURN_TYPES = ("MASK", "FLOAT", "IMAGE")
    RETURN_NAMES = ("defocus", "focus_distance", "defocus_image")
    OUTPUT_TOOLTIPS = ("defocus per pixel, 0 = in focus, 1 = max blur", "the focus distance used, metres",
                       "the defocus map as a grey image")

    @classmethod
    def INPUT_TYPES(cls):
        lens = {"aperture_k": _LENS_INPUTS["aperture_k"],
                "max_coc": ("FLOAT", {"default": defocus.DEFAULT_MAX_COC, "min": 1.0, "max": 1000.0, "step": 1.0,
                                      "tooltip": "Normaliser: a CoC of this many pixels maps to 1 (GenFocus: 100)."})}
        return {"required": {**_DEPTH_INPUTS, **_FOCUS_INPUTS, **lens},
                "optional": {"focus_mask": ("MASK", {"tooltip": "Region to focus on (focus_mode 'mask')."})}}

    def compute(self, depth, depth_convention, focus_mode, focus_x, focus_y, focus_distance, aperture_k,
                max_coc, focus_mask=None):
        node = runtime.node_label(VBDefocusMap)
        inv = defocus.inverse_depth(_as_depth_batch(node, depth), _convention(node, depth_convention))
        maps, first = [], None
        for i in range(inv.shape[0]):
            focus_inv = _resolve_focus(node, inv[i], focus_mode, focus_x, focus_y, focus_distance, focus_mask, i)
            first = focus_inv if first is None else first
            maps.append(defocus.defocus_map(inv[i], focus_inv, float(aperture_k), float(max_coc)))
        defocus_maps = torch.stack(maps)
        # GenFocus feeds BokehNet a 3-channel picture of the map
        return defocus_maps, _distance(first), defocus_maps.unsqueeze(-1).repeat(1, 1, 1, 3)


class VBBokehRender:
    DESCRIPTION = ("Depth-aware, occlusion-aware lens blur: disc or polygon aperture, focus from a point, a "
                   "mask or a distance. Each image uses its own depth map.")
    CATEGORY = CATEGORY
    FUNCTION = "render"
    RETURN_TYPES = ("IMAGE", "FLOAT")
    RETURN_NAMES = ("image", "focus_distance")
    OUTPUT_TOOLTIPS = ("the lens-blurred image, float 0..1", "the focus distance used, metres")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE", {"tooltip": "All-in-focus image(s)."}),
                             **_DEPTH_INPUTS, **_FOCUS_INPUTS, **_LENS_INPUTS},
                "optional": {"focus_mask": ("MASK", {"tooltip": "Region to focus on (focus_mode 'mask')."}),
                             "resize_depth_to_image": ("BOOLEAN", {"default": False, "tooltip":
                                                       "Resize a depth map of another size instead of failing."})}}

    def render(self, image, depth, depth_convention, focus_mode, focus_x, focus_y, focus_distance, aperture_k,
               max_coc, aperture_shape, blades, rotation, linear_light, focus_mask=None,
               resize_depth_to_image=False):
        node = runtime.node_label(VBBokehRender)
        _check_image(node, image)
        depth = _match_depth(node, image, depth, resize_depth_to_image)
        inv = defocus.inverse_depth(depth, _convention(node, depth_convention))
        lens = _lens(aperture_k, max_coc, aperture_shape, blades, rotation, linear_light)
        focus = [_resolve_focus(node, inv[i], focus_mode, focus_x, focus_y, focus_distance, focus_mask, i)
                 for i in range(image.shape[0])]
        device = _device()
        bar = runtime.progress_bar(image.shape[0])
        out = bokeh.render_batch(image[..., :3].to(device), inv.to(device), focus, lens,
                                 on_step=runtime.check_interrupt, on_focus_done=bar.update)
        return out.cpu(), _distance(focus[0])


class VBRackFocus:
    DESCRIPTION = ("Rack focus / focal stack: sweep the focal plane from near to far (even steps in 1/d) over "
                   "N frames of one image → IMAGE batch, ready for a video saver.")
    CATEGORY = CATEGORY
    FUNCTION = "rack"
    RETURN_TYPES = ("IMAGE", "FLOAT", "FLOAT")
    RETURN_NAMES = ("frames", "near_focus", "far_focus")
    OUTPUT_TOOLTIPS = ("one image per focal plane, near → far", "nearest focus distance, metres",
                       "farthest focus distance, metres")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE", {"tooltip": "All-in-focus image (the first of a batch is used)."}),
            **_DEPTH_INPUTS,
            "frames": ("INT", {"default": 24, "min": 1, "max": 1000, "tooltip": "Number of focus steps."}),
            "near_focus": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1e6, "step": 0.01,
                                     "tooltip": "First focus distance; 0 = the nearest surface in the depth map."}),
            "far_focus": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1e6, "step": 0.01,
                                    "tooltip": "Last focus distance; 0 = the farthest surface in the depth map."}),
            "reverse": ("BOOLEAN", {"default": False, "tooltip": "Sweep far → near instead."}),
            **_LENS_INPUTS,
        }, "optional": {"resize_depth_to_image": ("BOOLEAN", {"default": False, "tooltip":
                                                  "Resize a depth map of another size instead of failing."})}}

    def rack(self, image, depth, depth_convention, frames, near_focus, far_focus, reverse, aperture_k, max_coc,
             aperture_shape, blades, rotation, linear_light, resize_depth_to_image=False):
        node = runtime.node_label(VBRackFocus)
        _check_image(node, image)
        depth = _match_depth(node, image[:1], _as_depth_batch(node, depth)[:1], resize_depth_to_image)
        inv = defocus.inverse_depth(depth[0], _convention(node, depth_convention))
        lens = _lens(aperture_k, max_coc, aperture_shape, blades, rotation, linear_light)
        bar = runtime.progress_bar(int(frames))
        stack, distances = focal_stack.render_focal_stack(
            image[0, ..., :3].to(_device()), inv.to(_device()), int(frames), lens, near_focus, far_focus,
            reverse=bool(reverse), on_frames_done=bar.update, on_step=runtime.check_interrupt)
        return stack.cpu(), min(float(distances[0]), 1e9), min(float(distances[-1]), 1e9)


NODE_CLASS_MAPPINGS = {
    "VBSampleRGBDScene": VBSampleRGBDScene,
    "VBDepthFromImage": VBDepthFromImage,
    "VBDepthEstimate": VBDepthEstimate,
    "VBDefocusMap": VBDefocusMap,
    "VBBokehRender": VBBokehRender,
    "VBRackFocus": VBRackFocus,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "VBSampleRGBDScene": "Sample RGB-D Scene (VibeBoard)",
    "VBDepthFromImage": "Depth From Image (VibeBoard)",
    "VBDepthEstimate": "Depth Estimate (VibeBoard)",
    "VBDefocusMap": "Defocus Map (VibeBoard)",
    "VBBokehRender": "Bokeh Render (VibeBoard)",
    "VBRackFocus": "Rack Focus (VibeBoard)",
}
