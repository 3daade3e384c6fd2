"""Monocular depth estimation: Depth Anything V2 or Depth Pro through transformers, from a local folder.

Folder layout = the Hugging Face repos' layout, copied under `<models>/depth/<folder>/`:
  config.json + model.safetensors (or a sharded *.safetensors index) + preprocessor_config.json, e.g.
  depth-anything/Depth-Anything-V2-Small-hf  → relative disparity (bigger = nearer), or the
  Depth-Anything-V2-Metric-*-hf variants        → metric depth (config depth_estimation_type = "metric");
  apple/DepthPro-hf                             → metric depth in metres (focal length from its FOV head).
Weights are never downloaded (local_files_only=True) and only safetensors are read.

Pre- and post-processing are done in torch on the model's device (the same steps as the transformers image
processors: DPT resize to a multiple of 14 keeping aspect, ImageNet normalisation; Depth Pro normalises
then resizes to its fixed square input, and turns its canonical inverse depth into metres with
f_px = 0.5·W / tan(fov/2)).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from . import defocus

MODEL_SUBDIR = "depth"
_cache: dict = {}


class MissingWeights(FileNotFoundError):
    """The model folder or its safetensors weights are absent."""


@dataclass
class DepthModel:
    model: torch.nn.Module
    kind: str            # "depth_anything" | "depth_pro"
    convention: str      # defocus.METRIC | defocus.DISPARITY
    preprocess: dict     # preprocessor_config.json contents (may be empty)
    device: torch.device
    dtype: torch.dtype
    path: str


def list_model_folders(models_dir: str) -> list:
    """Sub-folders of <models>/depth that contain a config.json."""
    root = os.path.join(models_dir, MODEL_SUBDIR)
    if not os.path.isdir(root):
        return []
    return sorted(name for name in os.listdir(root) if os.path.isfile(os.path.join(root, name, "config.json")))


def check_folder(path: str) -> None:
    """Raise MissingWeights with what is missing and what is expected."""
    expected = "config.json + model.safetensors (+ preprocessor_config.json)"
    if not os.path.isdir(path):
        raise MissingWeights(f"model folder not found: {path} (expected {expected})")
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise MissingWeights(f"{path} has no config.json (expected {expected})")
    names = os.listdir(path)
    if not any(n.endswith(".safetensors") for n in names):
        hint = " (only safetensors are loaded; .bin/.pt pickles are refused)" if any(
            n.endswith((".bin", ".pt", ".pth")) for n in names) else ""
        raise MissingWeights(f"{path} has no .safetensors weights{hint} (expected {expected})")


def _resolve_dtype(precision: str, device: torch.device) -> torch.dtype:
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def load(path: str, device: Optional[str] = None, precision: str = "auto") -> DepthModel:
    """Load (cached) a Depth Anything V2 / Depth Pro folder."""
    check_folder(path)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = _resolve_dtype(precision, dev)
    key = (os.path.abspath(path), str(dev), dtype)
    if key in _cache:
        return _cache[key]
    with open(os.path.join(path, "config.json"), encoding="utf-8") as fh:
        config = json.load(fh)
    model_type = config.get("model_type", "")
    preprocess = {}
    pre_path = os.path.join(path, "preprocessor_config.json")
    if os.path.isfile(pre_path):
        with open(pre_path, encoding="utf-8") as fh:
            preprocess = json.load(fh)
    if model_type == "depth_pro":
        from transformers import DepthProForDepthEstimation
        model = DepthProForDepthEstimation.from_pretrained(path, local_files_only=True, use_safetensors=True)
        kind, convention = "depth_pro", defocus.METRIC
    elif model_type == "depth_anything":
        from transformers import AutoModelForDepthEstimation
        model = AutoModelForDepthEstimation.from_pretrained(path, local_files_only=True, use_safetensors=True)
        kind = "depth_anything"
        metric = config.get("depth_estimation_type", "relative") == "metric"
        convention = defocus.METRIC if metric else defocus.DISPARITY
    else:
        raise ValueError(f"{path}: model_type {model_type!r} is not a supported depth model "
                         "(expected depth_anything or depth_pro)")
    model = model.to(device=dev, dtype=dtype).eval()  # cast after loading: works on every transformers 4.49+
    _cache.clear()  # keep one depth model resident: they are helpers, not the main act
    _cache[key] = DepthModel(model, kind, convention, preprocess, dev, dtype, path)
    return _cache[key]


def _dpt_input_size(height: int, width: int, pre: dict) -> tuple:
    size = pre.get("size", {"height": 518, "width": 518})
    target_h, target_w = size.get("height", 518), size.get("width", 518)
    multiple = int(pre.get("ensure_multiple_of", 14))
    scale_h, scale_w = target_h / height, target_w / width
    if pre.get("keep_aspect_ratio", True):  # scale as little as possible, as DPT does
        if abs(1 - scale_w) < abs(1 - scale_h):
            scale_h = scale_w
        else:
            scale_w = scale_h

    def to_multiple(value: float) -> int:
        return max(multiple, int(round(value / multiple) * multiple))

    return to_multiple(scale_h * height), to_multiple(scale_w * width)


def _normalise(x: torch.Tensor, pre: dict, default_mean, default_std) -> torch.Tensor:
    if not pre.get("do_normalize", True):
        return x
    mean = torch.tensor(pre.get("image_mean", default_mean), device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    std = torch.tensor(pre.get("image_std", default_std), device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - mean) / std


def _run_depth_anything(dm: DepthModel, images: torch.Tensor) -> torch.Tensor:
    h, w = images.shape[-2:]
    size = _dpt_input_size(h, w, dm.preprocess)
    x = F.interpolate(images, size=size, mode="bicubic", align_corners=False).clamp(0, 1)
    x = _normalise(x, dm.preprocess, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    out = dm.model(pixel_values=x.to(dm.dtype)).predicted_depth.float()
    depth = F.interpolate(out.unsqueeze(1), size=(h, w), mode="bicubic", align_corners=False)[:, 0]
    return depth.clamp(min=0)


def _run_depth_pro(dm: DepthModel, images: torch.Tensor) -> torch.Tensor:
    h, w = images.shape[-2:]
    config = dm.model.config
    side = int(round(config.patch_size / min(config.scaled_images_ratios)))
    size = dm.preprocess.get("size", {"height": side, "width": side})
    x = _normalise(images, dm.preprocess, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    x = F.interpolate(x, size=(size["height"], size["width"]), mode="bilinear", align_corners=False)
    out = dm.model(pixel_values=x.to(dm.dtype))
    inverse = out.predicted_depth.float()
    if out.field_of_view is not None:  # canonical inverse depth → metric: × W / f_px = × 2·tan(fov/2)
        fov = torch.deg2rad(out.field_of_view.float()).view(-1, 1, 1)
        inverse = inverse * (2.0 * torch.tan(0.5 * fov))
    inverse = F.interpolate(inverse.unsqueeze(1), size=(h, w), mode="bilinear", align_corners=False)[:, 0]
    return 1.0 / inverse.clamp(min=1e-4, max=1e4)


@torch.inference_mode()
def estimate(dm: DepthModel, images: torch.Tensor, batch_size: int = 4,
             on_batch: Optional[Callable[[int], None]] = None) -> torch.Tensor:
    """IMAGE [B, H, W, 3] 0..1 → depth [B, H, W] (float32, on CPU) in dm.convention."""
    results = []
    for start in range(0, images.shape[0], batch_size):
        chunk = images[start: start + batch_size, ..., :3].permute(0, 3, 1, 2).to(dm.device, torch.float32)
        run = _run_depth_pro if dm.kind == "depth_pro" else _run_depth_anything
        results.append(run(dm, chunk).cpu())
        if on_batch is not None:
            on_batch(chunk.shape[0])
    return torch.cat(results, 0)


def to_convention(depth: torch.Tensor, source: str, target: str, near: float = 1.0,
                  far: float = 100.0) -> torch.Tensor:
    """Convert between conventions. disparity → metric maps the normalised disparity's [0, 1] range onto
    inverse depths [1/far, 1/near] (an assumption: relative disparity has no scale); metric → disparity
    gives 1/z normalised to max 1 (white = near, the usual depth-map picture)."""
    if source == target:
        return depth
    inv = defocus.inverse_depth(depth, source)
    if target == defocus.DISPARITY:
        peak = float(inv.max())
        return inv / peak if peak > 0 else inv
    if near <= 0 or far <= near:
        raise ValueError("need 0 < near < far to turn relative disparity into metric depth")
    lo, hi = float(inv.min()), float(inv.max())
    unit = (inv - lo) / (hi - lo) if hi > lo else torch.zeros_like(inv)
    inverse = 1.0 / far + unit * (1.0 / near - 1.0 / far)
    return 1.0 / inverse


def expected_path(models_dir: str, folder: str) -> str:
    return os.path.join(models_dir, MODEL_SUBDIR, folder)
