"""SAM instance masks through transformers (3D-RE-GEN uses SAM ViT-H, `facebook/sam-vit-huge`).

Loads the published Hugging Face layout — `config.json` + `model.safetensors` + `preprocessor_config.json`
(SamModel / SamProcessor) — from a local folder, offline, safetensors only. "Everything" mode like SAM's
automatic mask generator: prompt a grid of points, keep each point's best mask when its predicted IoU is
high enough, drop near-duplicates (mask IoU), return the masks largest first.
"""
from __future__ import annotations

import os

import torch

REQUIRED_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")


def check_folder(path: str) -> None:
    missing = [f for f in REQUIRED_FILES if not os.path.isfile(os.path.join(path, f))]
    if missing:
        raise FileNotFoundError(f"{path}: not a SAM folder in the Hugging Face layout (missing {missing}); "
                                "download facebook/sam-vit-huge (or -large/-base) there")


class SamMasker:
    def __init__(self, folder: str, device: str = "cpu", dtype=torch.float32, points_per_side: int = 16,
                 iou_threshold: float = 0.7):
        from transformers import SamModel, SamProcessor

        check_folder(folder)
        self.model = SamModel.from_pretrained(folder, local_files_only=True, use_safetensors=True,
                                              dtype=dtype).to(device).eval()
        self.processor = SamProcessor.from_pretrained(folder, local_files_only=True)
        self.device, self.dtype = device, dtype
        self.identity = os.path.basename(os.path.normpath(folder))
        self.points_per_side, self.iou_threshold = int(points_per_side), float(iou_threshold)

    @torch.no_grad()
    def instances(self, image: torch.Tensor, points_per_side: int | None = None, iou_threshold: float | None = None,
                  dedupe_iou: float = 0.7, min_pixels: int = 40, batch: int = 16) -> torch.Tensor:
        """image [H, W, 3] 0..1 → bool masks [K, H, W] (grid and IoU bar default to the masker's settings)."""
        points_per_side = self.points_per_side if points_per_side is None else points_per_side
        iou_threshold = self.iou_threshold if iou_threshold is None else iou_threshold
        from PIL import Image

        h, w = image.shape[:2]
        pil = Image.fromarray((image.clamp(0, 1) * 255).round().to(torch.uint8).numpy())
        inputs = self.processor(images=pil, return_tensors="pt")
        pixel_values = inputs["pixel_values"].to(self.device, self.dtype)
        embeddings = self.model.get_image_embeddings(pixel_values)
        n = int(points_per_side)
        grid = [((i + 0.5) * w / n, (j + 0.5) * h / n) for j in range(n) for i in range(n)]
        found, scores = [], []
        for start in range(0, len(grid), batch):
            pts = grid[start:start + batch]
            prompt = self.processor(images=pil, input_points=[[[list(p)] for p in pts]], return_tensors="pt")
            points = prompt["input_points"].to(self.device, self.dtype)
            out = self.model(image_embeddings=embeddings, input_points=points, multimask_output=True)
            masks = self.processor.image_processor.post_process_masks(
                out.pred_masks.float().cpu(), prompt["original_sizes"], prompt["reshaped_input_sizes"])[0]
            iou = out.iou_scores[0].float().cpu()              # [P, 3]
            best = iou.argmax(-1)
            for p in range(len(pts)):
                found.append(masks[p, best[p]].bool())
                scores.append(float(iou[p, best[p]]))
        order = sorted(range(len(found)), key=lambda i: -scores[i])
        kept = []
        for i in order:
            m = found[i]
            if scores[i] < iou_threshold or int(m.sum()) < min_pixels:
                continue
            if any(float((m & k).sum()) / float((m | k).sum()) > dedupe_iou for k in kept):
                continue
            kept.append(m)
        if not kept:
            return torch.zeros(0, h, w, dtype=torch.bool)
        kept.sort(key=lambda m: -int(m.sum()))
        return torch.stack(kept)
