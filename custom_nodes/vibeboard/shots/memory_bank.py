"""StoryMem memory bank (`VB_STORY_MEMORY`): keyframes of earlier shots, persisted between runs.

On disk a bank is a folder with `manifest.json` (metadata, JSON) and one `memory-<n>.safetensors` (images as
uint8 [H, W, 3], optional CLIP embeddings and cached VAE latents). Writes are atomic: the tensor file gets a new
name, the manifest is replaced last with os.replace, then the old tensor file is removed, so a crash leaves the
previous bank readable.

Policy (StoryMem `pipeline.py`): keyframes kept in story order; beyond `max_size` keep the first `keep_first`
("sink") and the most recent `max_size - keep_first` ("sliding window"). Candidates whose CLIP embedding is
more similar than `dedup_threshold` to a bank entry are dropped (StoryMem: 0.9).
"""
from __future__ import annotations

import json
import os
import tempfile
import uuid
from dataclasses import dataclass, field
from typing import Optional

import torch

from ..common.paths import PathEscapeError, resolve_inside

FORMAT = "vibeboard.story_memory"
VERSION = 1
MANIFEST = "manifest.json"


class MemoryFileError(ValueError):
    """A bank folder whose files cannot be trusted or read (bad manifest, a name leading out of the folder)."""


def quantize_image(image: torch.Tensor) -> torch.Tensor:
    """Store images as 8-bit so a disk round trip is exact."""
    return (image.float().clamp(0, 1) * 255).round().to(torch.uint8)


@dataclass(eq=False)
class MemoryEntry:
    image: torch.Tensor                       # [H, W, 3] uint8
    shot: int = 0
    frame: int = 0
    source: str = "keyframe"                  # keyframe | reference | manual
    score: Optional[float] = None
    prompt: str = ""
    embedding: Optional[torch.Tensor] = None  # [D] float32, L2-normalised
    latent: Optional[torch.Tensor] = None     # [16, h, w] normalised Wan latent (cache)
    latent_size: Optional[tuple] = None       # (H, W) pixels the latent was encoded at

    def image_float(self) -> torch.Tensor:
        return self.image.float() / 255.0


@dataclass
class StoryMemoryBank:
    entries: list = field(default_factory=list)
    max_size: int = 8
    keep_first: int = 3
    dedup_threshold: float = 0.9
    story_id: str = ""
    next_shot: int = 1
    path: Optional[str] = None                # folder it was loaded from / saved to

    def __len__(self):
        return len(self.entries)

    def copy(self) -> "StoryMemoryBank":
        return StoryMemoryBank(list(self.entries), self.max_size, self.keep_first, self.dedup_threshold,
                               self.story_id, self.next_shot, self.path)

    # ---- policy ---------------------------------------------------------------------------------
    def is_duplicate(self, embedding: Optional[torch.Tensor]) -> bool:
        if embedding is None:
            return False
        for e in self.entries:
            if e.embedding is not None and float(torch.dot(e.embedding, embedding)) > self.dedup_threshold:
                return True
        return False

    def add(self, entry: MemoryEntry, dedup: bool = True) -> bool:
        """Add one entry (after the duplicate check) and apply the size policy. Returns whether it was kept."""
        if entry.image.dtype != torch.uint8:
            entry.image = quantize_image(entry.image)
        if dedup and self.is_duplicate(entry.embedding):
            return False
        self.entries.append(entry)
        self.apply_policy()
        return any(e is entry for e in self.entries)

    def apply_policy(self) -> None:
        self.entries.sort(key=lambda e: (e.shot, e.frame))
        if len(self.entries) > self.max_size:
            keep = max(0, min(self.keep_first, self.max_size))
            recent = self.max_size - keep
            self.entries = self.entries[:keep] + (self.entries[-recent:] if recent > 0 else [])

    # ---- tensors ---------------------------------------------------------------------------------
    def images(self, height: Optional[int] = None, width: Optional[int] = None) -> torch.Tensor:
        """IMAGE batch [N, H, W, 3] 0..1, resized to (height, width) or the first entry's size."""
        from ..wan.conditioning import resize_bicubic as resize_images
        if not self.entries:
            raise ValueError("the memory bank is empty")
        h = height or self.entries[0].image.shape[0]
        w = width or self.entries[0].image.shape[1]
        return torch.cat([resize_images(e.image_float()[None], h, w) for e in self.entries])

    # ---- disk ------------------------------------------------------------------------------------
    def save(self, folder: str) -> str:
        from safetensors.torch import save_file
        os.makedirs(folder, exist_ok=True)
        tensors, meta = {}, []
        for i, e in enumerate(self.entries):
            tensors[f"image.{i}"] = e.image.contiguous()
            if e.embedding is not None:
                tensors[f"embedding.{i}"] = e.embedding.float().contiguous()
            if e.latent is not None:
                tensors[f"latent.{i}"] = e.latent.float().contiguous()
            meta.append({"shot": e.shot, "frame": e.frame, "source": e.source, "score": e.score,
                         "prompt": e.prompt, "latent_size": list(e.latent_size) if e.latent_size else None})
        try:
            old = _read_manifest(folder)
        except MemoryFileError:  # a damaged or planted manifest is replaced, and nothing it names is touched
            old = None
        tensor_name = f"memory-{uuid.uuid4().hex[:12]}.safetensors"
        if tensors:
            _atomic_write(folder, tensor_name, lambda p: save_file(tensors, p))
        manifest = {"format": FORMAT, "version": VERSION, "story_id": self.story_id, "max_size": self.max_size,
                    "keep_first": self.keep_first, "dedup_threshold": self.dedup_threshold,
                    "next_shot": self.next_shot, "tensors": tensor_name if tensors else None, "entries": meta}
        text = json.dumps(manifest, indent=2)
        _atomic_write(folder, "manifest.json", lambda p: _write_text(p, text))
        stale = old.get("tensors") if isinstance(old, dict) else None
        if stale and stale != tensor_name:
            # the old name comes from a file anyone with write access to the folder could have planted: only a
            # plain name inside this folder is ever removed
            try:
                os.remove(_member(folder, stale))
            except (OSError, MemoryFileError):
                pass
        self.path = folder
        return folder

    @classmethod
    def load(cls, folder: str) -> "StoryMemoryBank":
        from safetensors.torch import load_file
        manifest = _read_manifest(folder)
        if manifest is None:
            raise FileNotFoundError(f"no story memory at {folder} (expected {os.path.join(folder, MANIFEST)})")
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise MemoryFileError(f"{folder}/{MANIFEST} is not a VibeBoard story memory")
        tensors = {}
        if manifest.get("tensors"):
            path = _member(folder, manifest["tensors"])
            try:
                tensors = load_file(path)
            except Exception as exc:  # a missing or corrupt tensor file: say which, not a traceback
                raise MemoryFileError(f"cannot read the bank's tensors {path}: {exc}") from None
        try:
            bank = cls(max_size=int(manifest["max_size"]), keep_first=int(manifest["keep_first"]),
                       dedup_threshold=float(manifest.get("dedup_threshold", 0.9)),
                       story_id=str(manifest.get("story_id", "")), next_shot=int(manifest.get("next_shot", 1)),
                       path=folder)
            for i, m in enumerate(manifest["entries"]):
                bank.entries.append(MemoryEntry(
                    image=tensors[f"image.{i}"], shot=m["shot"], frame=m["frame"], source=m.get("source", "keyframe"),
                    score=m.get("score"), prompt=m.get("prompt", ""), embedding=tensors.get(f"embedding.{i}"),
                    latent=tensors.get(f"latent.{i}"),
                    latent_size=tuple(m["latent_size"]) if m.get("latent_size") else None))
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise MemoryFileError(f"{folder}/{MANIFEST} is damaged: {type(exc).__name__}: {exc}") from None
        return bank


def _member(folder: str, name) -> str:
    """A file of the bank named by its manifest: a plain file name that resolves inside the folder."""
    try:
        return resolve_inside(folder, name, what=f"the file named in {MANIFEST}", allow_subdirs=False)
    except PathEscapeError as exc:
        raise MemoryFileError(f"{folder}: {exc}") from None


def _read_manifest(folder: str) -> Optional[dict]:
    path = _member(folder, MANIFEST)  # manifest.json itself may be a link planted to point elsewhere
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as exc:  # ValueError covers bad JSON and bytes that are not UTF-8
        raise MemoryFileError(f"cannot read {os.path.join(folder, MANIFEST)}: {exc}") from None


def _write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _atomic_write(folder: str, name: str, writer) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=folder)
    os.close(fd)
    try:
        writer(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(folder, name))
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
