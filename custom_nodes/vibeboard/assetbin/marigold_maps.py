"""Single-image PBR maps with Marigold intrinsic image decomposition (diffusers `MarigoldIntrinsicsPipeline`).

Published layouts (diffusers folders, `model_index.json` with `target_properties`):
- `prs-eth/marigold-iid-appearance-v1-1`: targets `albedo` (sRGB) and `material` — a stack whose channels are
  roughness, metallicity and nothing (InteriorVerse materials).
- `prs-eth/marigold-iid-lighting-v1-1`: targets `albedo`, `shading`, `residual` (HyperSim, linear).
The pipeline is the diffusers one, unchanged; this file turns its prediction into named maps in [H, W(, 3)].
"""
from __future__ import annotations

import os

import torch


def check_folder(path: str) -> None:
    if not os.path.isfile(os.path.join(path, "model_index.json")):
        raise FileNotFoundError(f"{path}: not a diffusers folder (no model_index.json); download "
                                "prs-eth/marigold-iid-appearance-v1-1 (or -lighting-v1-1) there")


def load_pipeline(folder: str, device: str = "cpu", dtype=torch.float32):
    from diffusers import MarigoldIntrinsicsPipeline

    check_folder(folder)
    pipe = MarigoldIntrinsicsPipeline.from_pretrained(folder, local_files_only=True, dtype=dtype)
    if not pipe.target_properties or "target_names" not in pipe.target_properties:
        raise ValueError(f"{folder}: model_index.json has no target_properties.target_names")
    pipe.vibeboard_identity = os.path.basename(os.path.normpath(folder))
    return pipe.to(device)


def split_targets(prediction: torch.Tensor, target_properties: dict) -> dict:
    """prediction [T, 3, H, W] (one image) → named maps: 3-channel targets as [H, W, 3], stacked sub-targets
    (e.g. material → roughness, metallicity) as [H, W]. `metallicity` is also given as `metallic`."""
    names = list(target_properties["target_names"])
    if prediction.shape[0] != len(names):
        raise ValueError(f"prediction has {prediction.shape[0]} targets but target_names lists {names}")
    out = {}
    for name, img in zip(names, prediction):
        props = target_properties.get(name, {})
        if props.get("prediction_space") == "stack":
            for i, sub in enumerate(props.get("sub_target_names", [])):
                if sub:
                    out[sub] = img[i].float()
        else:
            out[name] = img.permute(1, 2, 0).float()
    if "metallicity" in out:
        out["metallic"] = out["metallicity"]
    return out


@torch.no_grad()
def estimate(pipe, image: torch.Tensor, steps: int | None = None, seed: int = 0,
             processing_resolution: int | None = None) -> dict:
    """image [H, W, 3] 0..1 → maps at the image size (albedo [H, W, 3], roughness / metallic [H, W], ...)."""
    x = image[..., :3].permute(2, 0, 1)[None].float()
    gen = torch.Generator("cpu").manual_seed(int(seed))
    out = pipe(x, num_inference_steps=steps, generator=gen, output_type="pt",
               processing_resolution=processing_resolution)
    pred = out.prediction  # [T, 3, H, W]
    maps = split_targets(pred.cpu(), pipe.target_properties)
    maps["models"] = [f"marigold-iid:{getattr(pipe, 'vibeboard_identity', 'marigold')}"]
    return maps
