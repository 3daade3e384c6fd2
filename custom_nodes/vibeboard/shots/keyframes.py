"""StoryMem keyframe selection: which frames of a generated shot go into the memory bank.

Rule (StoryMem `extract_keyframes.py`): walk the frames; the first frame that passes the quality gate is the first
keyframe; a later frame becomes a keyframe when its CLIP image-embedding cosine similarity to the *last keyframe*
drops below `threshold` (0.9) and it passes the gate. If more than `max_keyframes` come out, the threshold is
lowered by `threshold_step` (0.01) and the walk repeated. Candidates too similar (> 0.9) to a bank entry are
dropped when they are added to the bank (`StoryMemoryBank.add`).

The quality gate is pluggable: StoryMem uses HPSv3 (score >= 3.0); any `scorer(images [N,H,W,3]) -> [N]` works.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Callable, Optional

import torch

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ClipImageEmbedder:
    """CLIP image embeddings via transformers' CLIPVisionModelWithProjection from a local folder.

    The folder is a Hugging Face CLIP checkpoint (e.g. openai/clip-vit-base-patch32 as downloaded): config.json +
    model.safetensors (+ optional preprocessor_config.json for size/mean/std). A full CLIPModel folder also works:
    transformers loads the vision tower and projection from it.
    """

    def __init__(self, folder: str, device: str = "cpu", dtype=torch.float32):
        if not os.path.isdir(folder) or not os.path.isfile(os.path.join(folder, "config.json")):
            raise FileNotFoundError(f"CLIP model folder not found: {folder} (expected config.json + model.safetensors)")
        from transformers import CLIPVisionModelWithProjection
        self.model = CLIPVisionModelWithProjection.from_pretrained(folder, torch_dtype=dtype,
                                                                   use_safetensors=True).to(device).eval()
        self.device, self.dtype = device, dtype
        size = self.model.config.image_size
        mean, std = CLIP_MEAN, CLIP_STD
        pre = os.path.join(folder, "preprocessor_config.json")
        if os.path.isfile(pre):
            with open(pre, encoding="utf-8") as f:
                p = json.load(f)
            mean, std = tuple(p.get("image_mean", mean)), tuple(p.get("image_std", std))
        self.size = size
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """IMAGE [N, H, W, 3] 0..1 -> CLIP pixel_values: shortest side to `size` (bicubic), centre crop, normalise."""
        x = images.float().permute(0, 3, 1, 2)
        h, w = x.shape[-2:]
        s = self.size / min(h, w)
        nh, nw = max(self.size, round(h * s)), max(self.size, round(w * s))
        x = torch.nn.functional.interpolate(x, size=(nh, nw), mode="bicubic", align_corners=False).clamp(0, 1)
        top, left = (nh - self.size) // 2, (nw - self.size) // 2
        x = x[:, :, top:top + self.size, left:left + self.size]
        return (x - self.mean) / self.std

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
        out = []
        for i in range(0, images.shape[0], batch_size):
            px = self.preprocess(images[i:i + batch_size]).to(self.device, self.dtype)
            out.append(self.model(pixel_values=px).image_embeds.float().cpu())
        e = torch.cat(out)
        return e / e.norm(dim=-1, keepdim=True).clamp_min(1e-12)


@dataclass
class KeyframeResult:
    indices: list          # selected frame indices (ascending)
    threshold: float       # threshold the final walk used
    embeddings: torch.Tensor  # [N, D] all frames' embeddings
    scores: Optional[torch.Tensor] = None


def _walk(emb: torch.Tensor, ok: torch.Tensor, threshold: float) -> list:
    picked = []
    for i in range(emb.shape[0]):
        if not ok[i]:
            continue
        if not picked or float(emb[i] @ emb[picked[-1]]) < threshold:
            picked.append(i)
    return picked


def select_keyframes(frames: torch.Tensor, embed: Callable[[torch.Tensor], torch.Tensor], threshold: float = 0.9,
                     max_keyframes: int = 3, threshold_step: float = 0.01, min_threshold: float = 0.0,
                     scorer: Optional[Callable[[torch.Tensor], torch.Tensor]] = None, min_score: float = 3.0,
                     stride: int = 1) -> KeyframeResult:
    """Pick keyframes from IMAGE frames [N, H, W, 3]. `stride` subsamples the walk (every k-th frame)."""
    idx = torch.arange(0, frames.shape[0], max(1, stride))
    emb_sub = embed(frames[idx])
    emb_sub = emb_sub / emb_sub.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    scores = scorer(frames[idx]).float().flatten() if scorer is not None else None
    ok = scores >= min_score if scores is not None else torch.ones(len(idx), dtype=torch.bool)
    if scores is not None and not bool(ok.any()):
        ok = scores == scores.max()  # nothing passes the gate: keep the best frame rather than none
    t = threshold
    picked = _walk(emb_sub, ok, t)
    while len(picked) > max_keyframes and t - threshold_step >= min_threshold:
        t = round(t - threshold_step, 6)
        picked = _walk(emb_sub, ok, t)
    return KeyframeResult([int(idx[i]) for i in picked], t, emb_sub, scores)


def update_memory(bank, frames: torch.Tensor, embed: Callable, shot: Optional[int] = None, prompt: str = "",
                  threshold: float = 0.9, max_keyframes: int = 3, scorer=None, min_score: float = 3.0,
                  stride: int = 1, dedup: bool = True):
    """Select keyframes of one shot and add them to a copy of `bank`. Returns (new bank, KeyframeResult, kept idx)."""
    from .memory_bank import MemoryEntry
    new = bank.copy()
    shot = new.next_shot if shot is None else shot
    res = select_keyframes(frames, embed, threshold, max_keyframes, scorer=scorer, min_score=min_score,
                           stride=stride)
    kept = []
    sub_index = {int(f): j for j, f in enumerate(range(0, frames.shape[0], max(1, stride)))}
    for f in res.indices:
        j = sub_index[f]
        entry = MemoryEntry(image=frames[f], shot=shot, frame=f, prompt=prompt, embedding=res.embeddings[j].clone(),
                            score=None if res.scores is None else float(res.scores[j]))
        if new.add(entry, dedup=dedup):
            kept.append(f)
    new.next_shot = max(new.next_shot, shot + 1)
    return new, res, kept


def sharpness_score(images: torch.Tensor) -> torch.Tensor:
    """A cheap built-in quality gate: variance of the Laplacian of the grey image (x1000); blurry frames score low.

    StoryMem gates with HPSv3 (an aesthetic reward model, score >= 3.0); plug any scorer with this signature.
    """
    grey = images[..., :3].float().mean(dim=-1, keepdim=True).permute(0, 3, 1, 2)
    k = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
    lap = torch.nn.functional.conv2d(grey, k)
    return lap.flatten(1).var(dim=1) * 1000.0
