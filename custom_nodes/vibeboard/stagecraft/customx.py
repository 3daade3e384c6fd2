"""CustomX (ex-AniX, snowflakewang/AniX): a character placed in a 3D scene as video — HunyuanCustom (13B)
+ a rank-64 kohya LoRA, conditioned on a *scene video* rendered along the camera path, a per-frame character
anchor mask, four character views and text; long takes by autoregressive clips.

What runs here, honestly:
- the published layout check: `models/base/hunyuancustom_editing_720P/mp_rank_00_model_states.pt` (HunyuanCustom,
  tencent/HunyuanCustom), `models/lora/pytorch_lora_kohaya_weights.safetensors` (HF SnowflakeWang/CustomX,
  token-gated), plus the VAE / CLIP / LLaVA folders the authors' script expects;
- the kohya LoRA reader and merge (W += scale · up @ down, the authors' rule: `.alpha` entries are ignored)
  into any module that uses HunyuanVideo's original names (the authors' model). diffusers' HunyuanVideo uses
  other names and has no HunyuanCustom, so the 13B generation itself needs the authors' code (not wired here);
- the training-free conditioning: the scene video and its visibility mask rendered along the path (a point
  splat on CPU instead of 3D Gaussian splatting; the previz grey-box set also works), anchor masks from
  blocking boxes, the four views (ids 0, 2, 4, 6 of an 8-view orbit), and the autoregressive clip plan / merge
  (129-frame clips, 9 clean latent frames = 33 video frames carried over with the 4× temporal VAE).
"""
from __future__ import annotations

import os

import numpy as np
import torch

LAYOUT = {
    "base": "base/hunyuancustom_editing_720P/mp_rank_00_model_states.pt",
    "lora": "lora/pytorch_lora_kohaya_weights.safetensors",
}
LORA_RANK = 64
CLIP_FRAMES = 129
CLEAN_LATENT_FRAMES = 9
TEMPORAL_STRIDE = 4
VIEW_IDS = (0, 2, 4, 6)  # front, left, back, right of an 8-view orbit (the authors' --multi-view-ids)
LICENCE_TAG = "customx"


def check_layout(models_root: str) -> dict:
    """Which of the published files are present: {"present": [...], "missing": [...]} (paths relative)."""
    out = {"present": [], "missing": []}
    for rel in LAYOUT.values():
        out["present" if os.path.isfile(os.path.join(models_root, rel)) else "missing"].append(rel)
    return out


def read_kohya_lora(path: str) -> dict:
    """{module key (underscored, e.g. 'double_blocks_0_img_attn_qkv'): (up [out, r], down [r, in])}."""
    from safetensors.torch import load_file

    state = load_file(path)
    pairs = {}
    for key, down in state.items():
        if ".lora_down." not in key:
            continue
        up_key = key.replace(".lora_down.", ".lora_up.")
        if up_key not in state:
            raise ValueError(f"{path}: {key} has no matching lora_up")
        up = state[up_key]
        if up.dim() == 4:
            up, down = up.flatten(1), down.flatten(1)
        if up.shape[1] != down.shape[0]:
            raise ValueError(f"{path}: {key}: rank mismatch {tuple(up.shape)} @ {tuple(down.shape)}")
        name = key.split(".")[0]
        for prefix in ("lora_unet_", "lora_transformer_", "transformer_"):
            if name.startswith(prefix):
                name = name[len(prefix):]
        pairs[name] = (up.float(), down.float())
    if not pairs:
        raise ValueError(f"{path}: no kohya lora_down/lora_up pairs")
    return pairs


def resolve_module(root: torch.nn.Module, underscored: str) -> torch.nn.Module:
    """Find the sub-module an underscored kohya key names (module names may themselves contain '_')."""
    parts, module = underscored.split("_"), root
    i = 0
    while i < len(parts):
        for j in range(len(parts), i, -1):  # longest attribute name first
            name = "_".join(parts[i:j])
            child = getattr(module, name, None) if not name.isdigit() else (
                module[int(name)] if isinstance(module, (torch.nn.ModuleList, torch.nn.Sequential)) and
                int(name) < len(module) else getattr(module, name, None))
            if isinstance(child, torch.nn.Module):
                module, i = child, j
                break
        else:
            raise KeyError(f"LoRA key {underscored!r}: no sub-module at '{'_'.join(parts[i:])}'")
    return module


@torch.no_grad()
def merge_lora(model: torch.nn.Module, pairs: dict, scale: float = 1.0) -> int:
    """Add scale · up @ down into each named Linear's weight; returns how many layers changed."""
    count = 0
    for name, (up, down) in pairs.items():
        layer = resolve_module(model, name)
        delta = (up @ down) * float(scale)
        if layer.weight.shape != delta.shape:
            raise ValueError(f"LoRA {name}: delta {tuple(delta.shape)} does not fit weight {tuple(layer.weight.shape)}")
        layer.weight += delta.to(layer.weight)
        count += 1
    return count


def splat_render(points: torch.Tensor, colours: torch.Tensor, c2w: np.ndarray, k: tuple, width: int,
                 height: int) -> tuple:
    """Nearest-point z-buffer splat of world points [N, 3] (colours [N, 3]) through an OpenCV camera.
    Returns (image [H, W, 3], visibility mask [H, W] bool: False where no point landed)."""
    w2c = torch.from_numpy(np.linalg.inv(c2w)).to(points.dtype)
    cam = points @ w2c[:3, :3].T + w2c[:3, 3]
    z = cam[:, 2]
    fx, fy, cx, cy = k
    front = z > 1e-3
    u = torch.round(cam[front, 0] / z[front] * fx + cx).long()
    v = torch.round(cam[front, 1] / z[front] * fy + cy).long()
    zf, cf = z[front], colours[front]
    inside = (u >= 0) & (u < width) & (v >= 0) & (v < height)
    u, v, zf, cf = u[inside], v[inside], zf[inside], cf[inside]
    order = torch.argsort(zf, descending=True)  # far first: nearer points overwrite
    flat = v[order] * width + u[order]
    image = torch.zeros(height * width, 3, dtype=colours.dtype)
    seen = torch.zeros(height * width, dtype=torch.bool)
    image[flat] = cf[order]
    seen[flat] = True
    return image.view(height, width, 3), seen.view(height, width)


def scene_video(points: torch.Tensor, colours: torch.Tensor, path) -> tuple:
    """The scene rendered along a VB_CAMERA_PATH: (frames [T, H, W, 3], visibility [T, H, W])."""
    frames, masks = [], []
    for i in range(len(path)):
        img, seen = splat_render(points, colours, path.c2w[i], tuple(path.intrinsics[i]), path.width, path.height)
        frames.append(img)
        masks.append(seen)
    return torch.stack(frames), torch.stack(masks)


def anchor_masks(boxset, num_frames: int, height: int, width: int) -> torch.Tensor:
    """Per-frame character anchor masks [T, H, W] from blocking boxes (Shot Studio's VB_BOXES)."""
    from ..shots.boxes import pixel_masks, union

    return union(pixel_masks(boxset, num_frames, height, width))


def pick_views(views: list) -> list:
    """The four character views the model takes, from an 8-view orbit."""
    if len(views) < 8:
        raise ValueError(f"CustomX takes views {VIEW_IDS} of an 8-view orbit; got {len(views)} views")
    return [views[i] for i in VIEW_IDS]


def clip_plan(total_frames: int, clip_frames: int = CLIP_FRAMES, clean_latent: int = CLEAN_LATENT_FRAMES) -> list:
    """Autoregressive clips covering `total_frames`: [(start, end, condition_frames)], each clip after the first
    re-using the previous clip's last `(clean_latent − 1)·4 + 1` frames as its clean condition."""
    carry = (clean_latent - 1) * TEMPORAL_STRIDE + 1
    if clip_frames <= carry:
        raise ValueError(f"a clip of {clip_frames} frames cannot carry {carry} condition frames")
    plan, start = [(0, min(clip_frames, total_frames), 0)], min(clip_frames, total_frames)
    while start < total_frames:
        begin = start - carry
        end = min(begin + clip_frames, total_frames + 0)
        plan.append((begin, end, carry))
        start = end
    return plan


def merge_clips(clips: list, plan: list) -> torch.Tensor:
    """Stitch generated clips [T_i, H, W, 3] by the plan: each later clip's carried frames are dropped."""
    if len(clips) != len(plan):
        raise ValueError(f"{len(clips)} clips for a plan of {len(plan)}")
    out = []
    for clip, (start, end, carry) in zip(clips, plan):
        if len(clip) != end - start:
            raise ValueError(f"clip for frames {start}..{end} has {len(clip)} frames")
        out.append(clip[carry:])
    return torch.cat(out)
