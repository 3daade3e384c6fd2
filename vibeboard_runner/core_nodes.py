"""Embedded twins of ComfyUI's core IO nodes (LoadImage, SaveImage, PreviewImage).

Same class names, inputs and outputs as current ComfyUI's, so saved workflows run headless. They are
registered only by the embedded runner: inside ComfyUI the real core nodes are used (a pack can't override
them). Newer ComfyUI releases (after 0.3.64) gave SaveImage/PreviewImage an IMAGE output that passes the
images through; the twins declare it too, so a graph wired from it runs here (and one saved by 0.3.64, with
no output, still loads). tests/data/comfyui_core_io_signatures.json records both releases' signatures.
"""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import torch
from PIL import Image, ImageOps, PngImagePlugin

from vibeboard.common import budget, runtime
from vibeboard.media import files

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def _safe_input_path(name: str, node: str = "LoadImage", input_name: str = "image") -> str:
    """A combo name inside the input folder (the pack's own check: no absolute paths, drives, '..' or
    symlinks that lead outside)."""
    clean = name.split(" [", 1)[0] if name.endswith("]") else name  # ComfyUI's "name [input]" annotation
    try:
        return files.safe_join(runtime.input_directory(), clean)
    except files.UnsafeNameError as exc:
        raise runtime.NodeInputError(node, input_name, str(exc)) from None


def _list_input_images():
    folder = runtime.input_directory()
    found = []
    for root, _dirs, names in os.walk(folder):
        for name in names:
            if name.lower().endswith(IMAGE_EXTENSIONS):
                found.append(os.path.relpath(os.path.join(root, name), folder).replace(os.sep, "/"))
    return sorted(found)


class LoadImage:
    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE", "MASK")
    OUTPUT_TOOLTIPS = ("the image (all frames of an animated file), float 0..1",
                       "1 - alpha (0 where opaque; all 0 when the file has no alpha)")
    FUNCTION = "load_image"
    DESCRIPTION = "Load an image from the input folder (embedded twin of ComfyUI's LoadImage)."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": (_list_input_images(), {"image_upload": True,
                                                               "tooltip": "Image file in the input folder."})}}

    def load_image(self, image):
        path = _safe_input_path(image)
        try:
            img = Image.open(path)
        except (OSError, Image.DecompressionBombError) as exc:  # not an image, or a decompression bomb
            raise runtime.NodeInputError(runtime.node_label(LoadImage), "image",
                                         f"cannot read {image!r} as an image: {exc}") from None
        width, height = img.size  # from the header: refuse before decoding a single pixel
        budget.check(runtime.node_label(LoadImage), "image", (getattr(img, "n_frames", 1), height, width, 4),
                     "the decoded image")
        frames, masks = [], []
        for frame in _iter_frames(img):
            frame = ImageOps.exif_transpose(frame)
            if frame.mode == "I":
                frame = frame.point(lambda v: v * (1 / 255))
            rgb = np.asarray(frame.convert("RGB"), dtype=np.float32) / 255.0
            if frames and rgb.shape != frames[0].shape:
                break  # ComfyUI also stops at the first frame of another size
            frames.append(rgb)
            if "A" in frame.getbands():
                masks.append(1.0 - np.asarray(frame.getchannel("A"), dtype=np.float32) / 255.0)
            else:
                masks.append(np.zeros(rgb.shape[:2], dtype=np.float32))
        return (torch.from_numpy(np.stack(frames)), torch.from_numpy(np.stack(masks)))

    @classmethod
    def IS_CHANGED(cls, image):
        try:
            path = _safe_input_path(image)
            with open(path, "rb") as handle:
                return hashlib.sha256(handle.read()).hexdigest()
        except Exception:
            return float("nan")

    @classmethod
    def VALIDATE_INPUTS(cls, image):
        try:
            path = _safe_input_path(image)
        except runtime.NodeInputError as exc:
            return str(exc)
        if not os.path.isfile(path):
            return f"Invalid image file: {image}"
        return True


def _iter_frames(img):
    index = 0
    while True:
        try:
            img.seek(index)
        except EOFError:
            return
        yield img.copy()
        index += 1
        if not getattr(img, "n_frames", 1) > index:
            return


def _save_png_batch(images, directory, prefix, kind, prompt=None, extra_pnginfo=None, compress_level=4,
                    node=None):
    node = node or runtime.node_label(SaveImage)
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise runtime.NodeInputError(node, "images", f"expected IMAGE [B,H,W,C], got {shape}")
    results = []
    for image in images:
        array = np.clip(image.detach().float().cpu().numpy() * 255.0, 0, 255).astype(np.uint8)
        if array.shape[-1] == 1:
            array = array[..., 0]
        pil = Image.fromarray(array)
        meta = PngImagePlugin.PngInfo()
        if prompt is not None:
            meta.add_text("prompt", json.dumps(prompt))
        for key, value in (extra_pnginfo or {}).items():
            meta.add_text(key, json.dumps(value))
        path, subfolder, name = runtime.unique_output_path(directory, prefix, "png", node, "filename_prefix")
        with files.atomic_output(path) as tmp:  # a failed write removes the empty placeholder too
            pil.save(tmp, format="PNG", pnginfo=meta, compress_level=compress_level)
        results.append({"filename": name, "subfolder": subfolder, "type": kind})
    return results


class SaveImage:
    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    OUTPUT_TOOLTIPS = ("the same images, passed through (newer ComfyUI's output)",)
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    DESCRIPTION = "Save images as PNG to the output folder (embedded twin of ComfyUI's SaveImage)."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE", {"tooltip": "The images to save."}),
                             "filename_prefix": ("STRING", {"default": "ComfyUI",
                                                            "tooltip": "Prefix; may contain a subfolder."})},
                "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    def save_images(self, images, filename_prefix="ComfyUI", prompt=None, extra_pnginfo=None):
        saved = _save_png_batch(images, runtime.output_directory(), filename_prefix, "output",
                                prompt, extra_pnginfo)
        return {"ui": {"images": saved}, "result": (images,)}


class PreviewImage(SaveImage):
    DESCRIPTION = "Preview images (saved to the temp folder)."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE", {"tooltip": "The images to preview."})},
                "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    def save_images(self, images, filename_prefix="preview", prompt=None, extra_pnginfo=None):
        saved = _save_png_batch(images, runtime.temp_directory(), "ComfyUI_temp", "temp", None, None, 1,
                                node=runtime.node_label(PreviewImage))
        return {"ui": {"images": saved}, "result": (images,)}


NODE_CLASS_MAPPINGS = {"LoadImage": LoadImage, "SaveImage": SaveImage, "PreviewImage": PreviewImage}
NODE_DISPLAY_NAME_MAPPINGS = {"LoadImage": "Load Image", "SaveImage": "Save Image",
                              "PreviewImage": "Preview Image"}
