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


def load(path: str, device: str = "cpu"):
    """The authors' MVInverse from a HubMixin folder (config.json → constructor, model.safetensors) or from
    their `.pt` checkpoint (default constructor, tensors-only read). Missing weights are an error."""
    from safetensors.torch import load_file

    if os.path.isdir(path):
        info = check_layout(path)
        kwargs, state = info["config"], load_file(os.path.join(path, "model.safetensors"))
    else:
        kwargs, state = {}, read_pt_checkpoint(path)
    try:
        from mvinverse.models.mvinverse import MVInverse  # the authors' package (github.com/Maddog241/mvinverse)
    except ImportError:
        raise ImportError("MVInverse's network comes from the authors' package: pip install "
                          "git+https://github.com/Maddog241/mvinverse (non-commercial licence)") from None
    model = MVInverse(**kwargs)
    missing, _unexpected = model.load_state_dict(state, strict=False)  # the authors load non-strictly too
    if missing:
        raise ValueError(f"{path}: checkpoint lacks {len(missing)} weights of the network, e.g. {missing[:3]}")
    model.vibeboard_identity = os.path.basename(os.path.normpath(path))
    return model.to(device).eval()


@torch.no_grad()
def estimate(model, views: torch.Tensor) -> list:
    """IMAGE [N, H, W, 3] views of one scene → per-view PBR maps at the input size (see outputs_to_maps)."""
    param = next(model.parameters())
    outputs = model(prepare_views(views).to(param.device, param.dtype))
    return outputs_to_maps({k: v.cpu() for k, v in outputs.items()}, tuple(views.shape[1:3]))


def input_size(height: int, width: int) -> tuple:
    """The authors' resize rule (`inference.py`): long side scaled down to at most 1024 (truncated to whole
    pixels), then each side floored to a multiple of 14."""
    if max(height, width) > MAX_SIDE:
        scale = MAX_SIDE / max(height, width)
        height, width = int(height * scale), int(width * scale)
    return max(PATCH, height // PATCH * PATCH), max(PATCH, width // PATCH * PATCH)


def prepare_views(views: torch.Tensor) -> torch.Tensor:
    """IMAGE [N, H, W, 3] (0..1) → the model's input [1, N, 3, h, w] (0..1, as torchvision's ToTensor)."""
    n, h, w, _ = views.shape
    size = input_size(h, w)
    x = views[..., :3].permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return x[None]


def outputs_to_maps(outputs: dict, size: tuple) -> list:
    """The model's outputs — channels last, `res["albedo"][0]` is [N, h, w, 3], metallic / roughness
    [N, h, w, 1] (`inference.py`) — → one dict per view at `size`: albedo [H, W, 3], metallic / roughness
    [H, W], normal [H, W, 3] unit vectors, shading [H, W, 3]."""
    def get(name):
        t = outputs[name]
        t = t[0] if t.dim() == 5 else t  # drop the batch dimension
        return F.interpolate(t.float().permute(0, 3, 1, 2), size=size, mode="bilinear", align_corners=False)

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
