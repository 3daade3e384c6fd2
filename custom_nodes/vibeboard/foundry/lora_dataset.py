"""Training data for actor LoRAs: aspect-ratio buckets and an on-disk cache of VAE latents and text embeddings.

Encoding is the expensive, frozen part of LoRA training (VAE + a multi-billion-parameter text encoder), so each
(image, bucket) latent and each caption embedding is computed once and kept as a safetensors file named by the
hash of its inputs; the encoders can then be freed before the transformer is loaded (the musubi-tuner /
diffusion-pipe recipe). A changed image or caption gets a new hash, so a stale cache is never read.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Callable, List, Sequence, Tuple

import numpy as np
import torch

# Bucket edges are multiples of 16 (VAE ×8 and the 2×2 patch of Wan / Qwen-Image).
BUCKET_STEP = 16


def make_buckets(resolution: int, min_side: int = 256, max_side: int = 1024, step: int = BUCKET_STEP
                 ) -> List[Tuple[int, int]]:
    """(width, height) buckets whose area stays at or under resolution² — the kohya/ai-toolkit scheme."""
    area = resolution * resolution
    out = set()
    min_side, max_side = min(min_side, resolution), max(max_side, resolution)
    w = min_side
    while w <= max_side:
        h = min(max_side, (area // w) // step * step)
        if h >= min_side:
            out.add((w, h))
            out.add((h, w))
        w += step
    return sorted(out)


def pick_bucket(width: int, height: int, buckets: Sequence[Tuple[int, int]]) -> Tuple[int, int]:
    """The bucket with the nearest aspect ratio (log scale), ties to the larger area."""
    aspect = np.log(width / height)
    return min(buckets, key=lambda b: (abs(np.log(b[0] / b[1]) - aspect), -b[0] * b[1]))


def fit_to_bucket(image: np.ndarray, bucket: Tuple[int, int]) -> np.ndarray:
    """Resize (cover) and centre-crop an HWC uint8/float image to the bucket; returns float32 0..1."""
    from PIL import Image
    bw, bh = bucket
    h, w = image.shape[:2]
    scale = max(bw / w, bh / h)
    nw, nh = max(bw, round(w * scale)), max(bh, round(h * scale))
    arr = image if image.dtype == np.uint8 else (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    resized = np.asarray(Image.fromarray(arr).resize((nw, nh), Image.LANCZOS))
    top, left = (nh - bh) // 2, (nw - bw) // 2
    return resized[top:top + bh, left:left + bw].astype(np.float32) / 255.0


@dataclass
class Sample:
    image_path: str
    caption: str


def _hash(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else str(p).encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


def _file_bytes_hash(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class LatentCache:
    """Latents and text embeddings on disk. `encode_image(pixels [1,3,H,W] in -1..1) -> latent [C,(T),h,w]`,
    `encode_text(caption) -> (embeds [L,D], mask [L])`; `key` names the encoder set (model + dtype) so two
    models never share entries."""

    def __init__(self, folder: str, key: str, encode_image: Callable, encode_text: Callable):
        self.folder, self.key = folder, key
        self.encode_image, self.encode_text = encode_image, encode_text
        os.makedirs(folder, exist_ok=True)
        self.hits = self.misses = 0

    def _load_or(self, name: str, make: Callable) -> dict:
        from safetensors.torch import load_file, save_file
        path = os.path.join(self.folder, name + ".safetensors")
        if os.path.isfile(path):
            self.hits += 1
            return load_file(path)
        self.misses += 1
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in make().items()}
        tmp = path + ".part"
        save_file(tensors, tmp)
        os.replace(tmp, path)  # a crash mid-write never leaves a truncated cache entry
        return tensors

    def latent(self, image_path: str, bucket: Tuple[int, int]) -> torch.Tensor:
        def make():
            from PIL import Image
            pixels = fit_to_bucket(np.asarray(Image.open(image_path).convert("RGB")), bucket)
            x = torch.from_numpy(pixels).permute(2, 0, 1)[None] * 2.0 - 1.0
            with torch.no_grad():
                return {"latent": self.encode_image(x)}
        name = "lat_" + _hash(self.key, _file_bytes_hash(image_path), bucket)
        return self._load_or(name, make)["latent"]

    def text(self, caption: str) -> Tuple[torch.Tensor, torch.Tensor]:
        def make():
            with torch.no_grad():
                emb, mask = self.encode_text(caption)
            return {"embeds": emb, "mask": mask}
        out = self._load_or("txt_" + _hash(self.key, caption), make)
        return out["embeds"], out["mask"]


def build_items(samples: Sequence[Sample], cache: LatentCache, resolution: int) -> List[dict]:
    """Encode (or read from the cache) every sample into its bucket; items grouped by bucket so a batch never
    mixes shapes."""
    from PIL import Image
    buckets = make_buckets(resolution, min_side=max(BUCKET_STEP, resolution // 2), max_side=resolution * 2)
    items = []
    for s in samples:
        with Image.open(s.image_path) as im:
            bucket = pick_bucket(im.width, im.height, buckets)
        emb, mask = cache.text(s.caption)
        items.append({"latent": cache.latent(s.image_path, bucket), "embeds": emb, "mask": mask, "bucket": bucket,
                      "caption": s.caption})
    return items


def batches(items: List[dict], batch_size: int, generator: torch.Generator) -> List[List[int]]:
    """One epoch of index batches, shuffled with `generator` (its state is in the checkpoint, so a resumed
    run draws the same order), each batch from a single bucket."""
    by_bucket: dict = {}
    for i, it in enumerate(items):
        by_bucket.setdefault(it["bucket"], []).append(i)
    out = []
    for bucket in sorted(by_bucket):
        idx = by_bucket[bucket]
        perm = torch.randperm(len(idx), generator=generator).tolist()
        idx = [idx[p] for p in perm]
        out += [idx[i:i + batch_size] for i in range(0, len(idx), batch_size)]
    order = torch.randperm(len(out), generator=generator).tolist()
    return [out[o] for o in order]
