"""`VB_WAN`: a loaded Wan model family (DiT [+ second expert], VAE, UMT5, tokenizer, CLIP vision).

The handle holds *names* registered in the VRAM manager, not resident modules: whoever runs a piece asks
`handle.use("transformer")`, so the manager can evict what is not running. Other helpers (StoryMem, ReCo,
InfCam, Spatia) build on this handle and on `wan.sampler` / `wan.conditioning`; keep this surface stable.
"""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Optional

import torch

from ..common import grad
from ..models import loaders
from ..models import vram as vram_mod

# Per-variant sampling defaults (Wan2.1/2.2 configs: shift, CFG; A14B boundary).
DEFAULTS = {
    "t2v": dict(shift=5.0, cfg=5.0), "i2v": dict(shift=5.0, cfg=5.0), "vace": dict(shift=5.0, cfg=5.0),
    "ti2v": dict(shift=5.0, cfg=5.0), "i2v_a14b": dict(shift=5.0, cfg=3.5, boundary=0.900),
    "t2v_a14b": dict(shift=12.0, cfg=4.0, boundary=0.875),
}

# Memory modes as users know them (diffusers / FlashPortrait's GPU_memory_mode), mapped onto the VRAM manager.
MEMORY_MODES = ("full", "model_offload", "sequential")

_cache: dict = {}
_cache_lock = threading.Lock()


@dataclass
class WanHandle:
    variant: str                       # t2v | i2v | vace | ti2v | i2v_a14b | t2v_a14b
    keys: dict                         # part → name in the VRAM manager
    tokenizer: object = None
    manager: vram_mod.VramManager = None
    dtype: torch.dtype = torch.bfloat16
    boundary_ratio: Optional[float] = None
    sources: dict = field(default_factory=dict)   # part → file/folder it came from
    loras: list = field(default_factory=list)     # [(path, strength)] applied to the transformer(s)
    adapter: Optional[str] = None                 # part holding a model adapter (InfCam) whose predict()
                                                  # replaces the plain DiT call (wan/sampler.py)
    placement: dict = field(default_factory=dict)  # part → (mode, resident blocks) this handle runs it with
    offload_after_use: bool = False                # move each part back to host RAM when its run ends

    def has(self, part: str) -> bool:
        return part in self.keys

    def module(self, part: str) -> torch.nn.Module:
        """The module object (wherever its weights are now). Use `use()` to run it."""
        if part not in self.keys:
            raise KeyError(f"this Wan handle has no {part} (loaded parts: {sorted(self.keys)})")
        return self.manager.models[self.keys[part]].module

    def use(self, part: str):
        """Context manager: the part on the compute device, protected from eviction while inside.

        Placement (resident / block swap / sequential) is this handle's: a Memory Settings node gives its copy a
        placement, and the shared module is re-placed only while that copy runs it (other handles keep theirs)."""
        if part not in self.keys:
            raise KeyError(f"this Wan handle has no {part} (loaded parts: {sorted(self.keys)})")
        key = self.keys[part]
        entry = self.manager.models.get(key)
        if entry is not None:
            if not hasattr(entry, "vb_registered_placement"):
                entry.vb_registered_placement = (entry.mode, entry.resident_blocks)
            want = self.placement.get(part, entry.vb_registered_placement)
            if (entry.mode, entry.resident_blocks) != tuple(want) and not getattr(entry, "in_use", 0):
                self.manager.offload(key)  # the new placement takes effect on this load
                entry.mode, entry.resident_blocks = want
        if self.offload_after_use:
            return _offloaded_after(self.manager, key)
        return self.manager.use(key)

    def with_memory_mode(self, mode: str) -> "WanHandle":
        """A copy running in one of the usual memory modes (the input handle keeps its own):
        full — every part resident on the GPU and kept there (fastest, most VRAM);
        model_offload — each part on the GPU only while it runs, back in pinned host RAM right after
        (diffusers' enable_model_cpu_offload);
        sequential — the DiT by block swap with no block kept on the GPU, UMT5 layer by layer, each part offloaded
        after use (least VRAM; FlashPortrait's sequential_cpu_offload)."""
        if mode not in MEMORY_MODES:
            raise ValueError(f"memory mode must be one of {MEMORY_MODES}, not {mode!r}")
        new = self.with_parts()
        for part in self.keys:
            if part in ("transformer", "transformer_2"):
                new.placement[part] = ("blockswap", 0) if mode == "sequential" else ("resident", None)
            elif part == "text_encoder" and mode == "sequential":
                new.placement[part] = ("sequential", None)
            else:
                new.placement[part] = ("resident", None) if mode == "full" else ("auto", None)
        new.offload_after_use = mode != "full"
        return new

    @property
    def device(self) -> torch.device:
        return self.manager.device

    @property
    def vae_config(self):
        return self.module("vae").config

    @property
    def scale_temporal(self) -> int:
        return int(getattr(self.vae_config, "scale_factor_temporal", 4) or 4)

    @property
    def scale_spatial(self) -> int:
        return int(getattr(self.vae_config, "scale_factor_spatial", 8) or 8)

    @property
    def latent_channels(self) -> int:
        return int(self.vae_config.z_dim)

    def defaults(self) -> dict:
        return dict(DEFAULTS.get(self.variant, DEFAULTS["t2v"]))

    def with_parts(self, **keys) -> "WanHandle":
        """A copy with some parts replaced (e.g. a LoRA-patched transformer registered under a new name)."""
        new = WanHandle(**{**self.__dict__})
        new.keys = {**self.keys, **keys}
        new.loras = list(self.loras)
        new.placement = dict(self.placement)
        new.sources = dict(self.sources)
        return new

    @classmethod
    def from_modules(cls, manager: Optional[vram_mod.VramManager] = None, dtype: torch.dtype = torch.float32,
                     variant: Optional[str] = None, boundary_ratio: Optional[float] = None, tokenizer=None,
                     **parts) -> "WanHandle":
        """A handle over modules already built (tests, benches, research code): each part is registered in
        `manager` (default: a private CPU/GPU manager) under a name unique to that module object."""
        manager = manager or vram_mod.VramManager()
        keys = {}
        for part, module in parts.items():
            if module is None:
                continue
            keys[part] = f"{part}:module:{id(module)}"
            manager.register(keys[part], module, mode="resident")
        if variant is None and "transformer" in parts:
            variant = loaders.wan_variant(dict(parts["transformer"].config))
        return cls(variant=variant or "t2v", keys=keys, tokenizer=tokenizer, manager=manager, dtype=dtype,
                   boundary_ratio=boundary_ratio)


@contextmanager
def _offloaded_after(manager, key: str):
    with manager.use(key) as module:
        yield module
    if not manager.models[key].in_use:
        manager.offload(key)


def _direct_device(kind: str, path: str, dtype: str, manager, mode: str, reserved: int = 0) -> tuple:
    """Where to read a single file: straight onto the GPU when it surely fits now (no host copy, no pinned
    staging, fp8 dequantised there once); else the host, and the VRAM manager moves it when it runs.
    `reserved`: bytes already promised to parts decided before this one (they load at the same time).
    Returns (device, bytes this part will take there)."""
    if manager.device.type == "cpu" or mode != "auto" or kind == "image_encoder" or os.path.isdir(path):
        return "cpu", 0
    widen = 2 if dtype not in ("fp32",) else 4          # fp8 file → bf16 weights (+ the fp8 copy while converting)
    need = os.path.getsize(path) * (widen + 1)
    if manager.device.type == "cuda":   # others (ComfyUI's own models) may hold memory our budget does not see
        free, _ = torch.cuda.mem_get_info(manager.device)
        if need > free - reserved:
            return "cpu", 0
    if manager.device_bytes() + reserved + need <= manager.budget:
        return str(manager.device), need
    return "cpu", 0


_key_locks: dict = {}


def _key(kind: str, path: str, dtype: str) -> str:
    return f"{kind}:{os.path.abspath(path)}:{dtype}"


def _load_cached(kind: str, path: str, dtype: str, manager, mode: str = "auto", device: Optional[str] = None):
    """Load one part (once per file and dtype; a second caller waits for the first). `device`: decided by the
    caller (`_load_concurrently`), else here."""
    key = _key(kind, path, dtype)
    with _cache_lock:
        lock = _key_locks.setdefault(key, threading.Lock())
    with lock:
        if key not in manager.models:
            fn = {"transformer": loaders.load_wan_transformer, "vae": loaders.load_wan_vae,
                  "text_encoder": loaders.load_umt5, "image_encoder": loaders.load_clip_vision}[kind]
            if device is None:
                device = _direct_device(kind, path, dtype, manager, mode)[0]
            with grad.outside_inference():  # shared weights outlive the node loading them (common.grad)
                module = fn(path, dtype) if device == "cpu" else fn(path, dtype, device=device)
            manager.register(key, module, mode=mode)
    return key


_warm: dict = {}    # text-encoder key → the thread warming its kernels up (encode_text waits for it)
TEXT_LEN_FOR_WARMUP = 512    # Wan's padded prompt length (conditioning.TEXT_LEN): the shapes the real encode runs
WARM_UP_DEVICES = ("cuda",)   # where a first forward pays one-off set-up worth hiding (tests add "cpu")


def _warm_up_text_encoder(path: str, device, dtype: torch.dtype) -> None:
    """Run a one-block UMT5 with the file's shapes (random weights, tiny vocabulary) once on Wan's padded prompt
    length, while the real encoder is still being read. Why: a process's first UMT5 forward on a GPU pays one-off
    set-up — cuBLAS/cuBLASLt handles and their choice of kernels for these shapes, the lazy load of each kernel's
    module: 0.41 s against 0.053 s for the next forward on an H200 (`.perf`-style probe, 2026-12-01); a forward of
    one block of the same shapes beforehand left the first real forward at 0.053 s. Only the header is read here.
    Failures are only logged: the real encode reports real errors."""
    import logging
    try:
        cfg = loaders.umt5_file_config(path)
        if cfg is None:
            return
        from transformers import UMT5EncoderModel
        cfg.num_layers, cfg.vocab_size = 1, 64
        with torch.device(device):
            block = UMT5EncoderModel(cfg).to(dtype).eval()
        ids = torch.zeros(1, TEXT_LEN_FOR_WARMUP, dtype=torch.long, device=device)
        mask = torch.ones_like(ids)
        mask[:, 8:] = 0
        with torch.inference_mode():
            block(ids, mask)
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)
        del block
    except Exception as exc:  # noqa: BLE001 - a warm-up only
        logging.getLogger("vibeboard.wan").debug("text encoder warm-up skipped: %s", exc)


def wait_for_warm_up(key: str) -> None:
    """Called by the text encode before it runs the encoder (so the two never compete for the GPU)."""
    thread = _warm.pop(key, None)
    if thread is not None:
        thread.join()


def _start_warm_up(key: str, path: str, device, dtype: str) -> None:
    if key in _warm:
        return
    thread = threading.Thread(target=_warm_up_text_encoder, daemon=True, name="vibeboard-umt5-warm-up",
                              args=(path, device, loaders.unquantized_dtype(dtype)))
    _warm[key] = thread
    thread.start()


def _load_concurrently(manager, jobs: list, tokenizer_job=None) -> tuple:
    """Load parts at the same time: jobs are (part, kind, path, dtype, mode). Reading from the page cache and
    copying to the GPU are parallel work (the 1.3B stack's three files loaded one after another took ≈ 3.5 s on an
    H200), and a one-block stand-in of UMT5 warms the GPU's kernels up meanwhile. Where each part goes (GPU or host) is
    decided first, in the jobs' order, so the DiT keeps its claim on the GPU as when loading one at a time.
    Returns ({part: key}, tokenizer or None). The first error is raised after every load has ended."""
    from concurrent.futures import ThreadPoolExecutor
    plan, reserved = [], 0
    for part, kind, path, dtype, mode in jobs:
        device = None
        if _key(kind, path, dtype) not in manager.models:
            device, need = _direct_device(kind, path, dtype, manager, mode, reserved)
            reserved += need
        plan.append((part, kind, path, dtype, mode, device))
        if kind == "text_encoder" and device is not None and manager.device.type in WARM_UP_DEVICES and (
                device != "cpu" or manager.device.type == "cpu"):   # going straight to the GPU: warm it meanwhile
            _start_warm_up(_key(kind, path, dtype), path, manager.device, dtype)
    keys: dict = {}
    with ThreadPoolExecutor(max_workers=len(plan) + 1, thread_name_prefix="vibeboard-load") as pool:
        tok_future = pool.submit(tokenizer_job) if tokenizer_job is not None else None
        futures = {part: pool.submit(_load_cached, kind, path, dtype, manager, mode, device)
                   for part, kind, path, dtype, mode, device in plan}
        errors = []
        for part, future in futures.items():
            try:
                keys[part] = future.result()
            except Exception as exc:  # noqa: BLE001 - re-raised below, after every load has ended
                errors.append(exc)
        tok = None
        if tok_future is not None:
            try:
                tok = tok_future.result()
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)
        if errors:
            raise errors[0]
    return keys, tok


_tokenizers: dict = {}
_tokenizer_lock = threading.Lock()


def _tokenizer_cached(text_encoder: str, tokenizer_folder: Optional[str]):
    """One tokenizer object per (file, folder) and file version: every run of a workflow gets the same object, so
    the text-embedding cache (keyed by it) hits, and the SentencePiece model is not re-read from a 6 GB file."""
    try:
        stamp = (os.path.getsize(text_encoder), os.path.getmtime(text_encoder))
    except OSError:
        stamp = None
    key = (os.path.abspath(text_encoder), tokenizer_folder and os.path.abspath(tokenizer_folder), stamp)
    with _tokenizer_lock:
        if key not in _tokenizers:
            tok = loaders.tokenizer_from_checkpoint(text_encoder) if os.path.isfile(text_encoder) else None
            if tok is None:
                folder = tokenizer_folder or (text_encoder if os.path.isdir(text_encoder) else None)
                tok = loaders.load_tokenizer(folder) if folder else None
            if tok is None:
                return None
            _tokenizers[key] = tok
        return _tokenizers[key]


def load_parts(manager, vae: Optional[str] = None, vae_dtype: str = "bf16", text_encoder: Optional[str] = None,
               tokenizer_folder: Optional[str] = None, image_encoder: Optional[str] = None,
               text_encoder_mode: str = "auto", transformers: tuple = ()) -> tuple:
    """Load (or reuse) the VAE / UMT5 / CLIP vision parts (and `transformers`: (part, path, dtype) of the DiTs,
    decided first) into `manager`, all at once. Returns (keys, tokenizer or None).

    The tokenizer comes from the text encoder file when it carries one (ComfyUI's UMT5 single files embed the
    SentencePiece model as a `spiece_model` tensor), else from `tokenizer_folder`, else from a diffusers folder."""
    jobs = [(part, "transformer", path, dtype, "auto") for part, path, dtype in transformers]
    if vae:
        jobs.append(("vae", "vae", vae, vae_dtype, "auto"))
    if text_encoder:
        jobs.append(("text_encoder", "text_encoder", text_encoder, vae_dtype, text_encoder_mode))
    if image_encoder:
        jobs.append(("image_encoder", "image_encoder", image_encoder, vae_dtype, "auto"))
    tokenizer_job = (lambda: _tokenizer_cached(text_encoder, tokenizer_folder)) if text_encoder else None
    if not jobs:
        return {}, None
    return _load_concurrently(manager, jobs, tokenizer_job)


def load_wan(transformer: str, vae: str, text_encoder: Optional[str] = None, tokenizer: Optional[str] = None,
             image_encoder: Optional[str] = None, transformer_2: Optional[str] = None, dtype: str = "bf16",
             manager: Optional[vram_mod.VramManager] = None, boundary_ratio: Optional[float] = None,
             text_encoder_mode: str = "auto") -> WanHandle:
    """Load (or reuse) each part and register it with the VRAM manager. Paths are files or diffusers folders.

    `transformer_2` is the low-noise expert of Wan2.2 A14B (used for t < boundary_ratio·1000).
    """
    manager = manager or vram_mod.manager()
    sources = {"transformer": transformer}
    dits = [("transformer", transformer, dtype)]
    if transformer_2:
        dits.append(("transformer_2", transformer_2, dtype))
        sources["transformer_2"] = transformer_2
    vae_dtype = "fp32" if dtype == "fp32" else "bf16"
    keys, tok = load_parts(manager, vae, vae_dtype, text_encoder, tokenizer, image_encoder, text_encoder_mode,
                           transformers=tuple(dits))
    sources.update({k: v for k, v in (("vae", vae), ("text_encoder", text_encoder),
                                      ("image_encoder", image_encoder)) if v})
    if text_encoder and tok is None:
        raise loaders.ModelFileError(
            f"the UMT5 tokenizer is needed next to {text_encoder} (the file carries none); "
            "run `vibeboard models pull umt5-tokenizer`")
    cfg = manager.models[keys["transformer"]].module.config
    variant = loaders.wan_variant(dict(cfg))
    if transformer_2:
        variant = "i2v_a14b" if variant == "i2v" else "t2v_a14b"
    if boundary_ratio is None and transformer_2:
        boundary_ratio = DEFAULTS[variant]["boundary"]
    return WanHandle(variant=variant, keys=keys, tokenizer=tok, manager=manager,
                     dtype=loaders.compute_dtype(dtype), boundary_ratio=boundary_ratio, sources=sources)
