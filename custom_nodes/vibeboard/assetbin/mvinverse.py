"""MVInverse (Maddog241/mvinverse): N unposed views → per-view albedo, metallic, roughness, normal, shading.

Published weights: HF `maddog241/mvinverse`, saved by `PyTorchModelHubMixin` → `config.json` (the
constructor's arguments) + `model.safetensors`; the repo's own `.pt` checkpoints hold `{"model": state}`.
Licence: Pi3, **non-commercial** — every asset made from its maps is marked so (licences.py).

The network (DINOv2 ViT-L/14-reg encoder, 36-layer alternating intra-/inter-view decoder with 2D RoPE, DPT
heads, ResNeXt-101 features) is the authors' code and is not re-implemented here: `load` builds it from the
installed `mvinverse` package and fills it from the safetensors file (or a `.pt` read with
`weights_only=True`, never a full unpickle). What is here: the layout checks, the input rule (long side
≤ 1024, multiples of 14) and the conversion of its outputs into PBR maps for pbr.py.
"""
from __future__ import annotations

import json
import os

import torch
import torch.nn.functional as F

LICENCE_TAG = "mvinverse"
PATCH = 14
MAX_SIDE = 1024


def check_layout(folder: str) -> dict:
    """The HubMixin layout: config.json (a JSON object) + model.safetensors with tensors in it."""
    from safetensors import safe_open

    cfg_path, weights = os.path.join(folder, "config.json"), os.path.join(folder, "model.safetensors")
    missing = [os.path.basename(p) for p in (cfg_path, weights) if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"{folder}: not an MVInverse folder (missing {missing}); download "
                                "maddog241/mvinverse there")
    with open(cfg_path) as handle:
        config = json.load(handle)
    if not isinstance(config, dict):
        raise ValueError(f"{cfg_path}: expected a JSON object of constructor arguments")
    with safe_open(weights, "pt") as f:
        keys = list(f.keys())
    if not keys:
        raise ValueError(f"{weights}: no tensors")
    return {"config": config, "keys": keys}


def read_pt_checkpoint(path: str) -> dict:
    """The repo's `.pt` checkpoint, tensors only (`weights_only=True`: no code runs while reading)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle objects beyond tensors/containers are refused by torch
        raise ValueError(f"{path}: refused to unpickle ({type(exc).__name__}); convert it to safetensors "
                         "with the authors' code in a trusted environment") from None
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected {{'model': state_dict}}")
    return state


def load(folder: str, device: str = "cpu"):
    """Build the authors' MVInverse from config.json and load model.safetensors (strict)."""
    from safetensors.torch import load_file

    info = check_layout(folder)
    try:
        from mvinverse.models.mvinverse import MVInverse  # the authors' package (github.com/Maddog241/mvinverse)
    except ImportError:
        raise ImportError("MVInverse's network comes from the authors' package: pip install "
                          "git+https://github.com/Maddog241/mvinverse (non-commercial licence)") from None
    model = MVInverse(**info["config"])
    model.load_state_dict(load_file(os.path.join(folder, "model.safetensors")), strict=True)
    model.vibeboard_identity = os.path.basename(os.path.normpath(folder))
    return model.to(device).eval()


def input_size(height: int, width: int) -> tuple:
    """The authors' resize rule: long side at most 1024, both sides multiples of 14."""
    scale = min(1.0, MAX_SIDE / max(height, width))
    return (max(PATCH, int(round(height * scale / PATCH)) * PATCH),
            max(PATCH, int(round(width * scale / PATCH)) * PATCH))


def prepare_views(views: torch.Tensor) -> torch.Tensor:
    """IMAGE [N, H, W, 3] → [1, N, 3, h, w] at the model's size."""
    n, h, w, _ = views.shape
    size = input_size(h, w)
    x = views[..., :3].permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return x[None]


def outputs_to_maps(outputs: dict, size: tuple) -> list:
    """Model outputs (per-view tensors [1, N, C, h, w]) → one dict per view at `size`: albedo [H, W, 3],
    metallic / roughness [H, W], normal [H, W, 3] unit vectors, shading [H, W, 3]."""
    def get(name):
        t = outputs[name]
        t = t[0] if t.dim() == 5 else t
        return F.interpolate(t.float(), size=size, mode="bilinear", align_corners=False)

    albedo, metal, rough = get("albedo").clamp(0, 1), get("metallic").clamp(0, 1), get("roughness").clamp(0, 1)
    normal = F.normalize(get("normal"), dim=1)
    shading = get("shading") if "shading" in outputs else None
    views = []
    for i in range(albedo.shape[0]):
        v = {"albedo": albedo[i].permute(1, 2, 0), "metallic": metal[i, 0], "roughness": rough[i, 0],
             "normal": normal[i].permute(1, 2, 0), "models": [f"{LICENCE_TAG}:maddog241/mvinverse"]}
        if shading is not None:
            v["shading"] = shading[i].permute(1, 2, 0)
        views.append(v)
    return views
