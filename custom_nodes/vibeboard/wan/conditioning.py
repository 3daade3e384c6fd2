"""Wan conditioning: prompts → UMT5 embeddings, frames ↔ raw VAE latents, I2V and VACE inputs.

Boundaries follow ComfyUI: IMAGE frames `[F,H,W,C]` 0..1, LATENT `{"samples": [B,16,T,H/8,W/8]}` holding *raw*
VAE latents (the sampler normalises with the VAE's latents_mean/std inside, like ComfyUI's Wan21 format).
Facts about the layouts (I2V mask folding, VACE inactive/reactive/mask channels) follow the Wan papers and
diffusers' Wan pipelines so the published weights see what they were trained on.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F

from ..common import runtime
from .handle import WanHandle, wait_for_warm_up

TEXT_LEN = 512
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class HeldRegion:
    """Latents held during sampling where `mask` is 1 (a conditioning builder's region to keep).

    mode "clean": the held values are exactly `latents` at every model call and at the end (StoryMem memory held
    clean, TI2V's first frame, Spatia history/reference frames).
    mode "renoise": the held values follow the ideal trajectory (1-s) latents + s noise, re-imposed after every
    step, and equal `latents` exactly at the end (inpainting-style plate keeping, ReCo's source half).
    `noise` None = the sampler's own initial noise.
    """
    latents: torch.Tensor
    mask: torch.Tensor  # broadcastable to latents, values in {0, 1}
    mode: str = "clean"
    noise: Optional[torch.Tensor] = None

    def apply(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        m = self.mask.to(x.dtype)
        if self.mode == "clean" or sigma <= 0.0:
            target = self.latents.to(x.dtype)
        elif self.mode == "renoise":
            noise = self.noise if self.noise is not None else torch.zeros_like(self.latents)
            target = ((1.0 - sigma) * self.latents + sigma * noise).to(x.dtype)
        else:
            raise ValueError(f"unknown hold mode {self.mode!r}")
        return x * (1 - m) + target * m


@dataclass
class GuidancePass:
    """One model evaluation of a multi-term guidance: its text embeddings and what it changes in
    `WanConditioning.extra` (a model adapter's switches, e.g. FlashPortrait's expression scale)."""
    embeds: torch.Tensor                              # [1, 512, text_dim]
    extra: dict = field(default_factory=dict)


# When the sampler batches guidance passes into one forward (`sampler.guided_passes`), the call's `extra` holds
# under this key the pass extras of each batch row, in row order; hooks that read them declare `vb_pass_rows`.
PASS_ROWS = "guidance_rows"


def pass_rows(extra: dict) -> list:
    """The per-row pass inputs of one DiT call: each row's `extra` when passes are batched, else [extra]."""
    return extra.get(PASS_ROWS) or [extra]


@dataclass
class Guidance:
    """Guidance with several terms: prediction = passes[base] + Σ scale · (passes[a] − passes[b]) over `terms`.
    Plain CFG is {cond, uncond}, base uncond, [(cfg, cond, uncond)]; FlashPortrait's text + expression guidance is
    three passes and two terms. When set on the conditioning it replaces the sampler's single CFG scale."""
    passes: dict                                      # name → GuidancePass
    base: str
    terms: list = field(default_factory=list)         # [(scale, pass a, pass b)]


@dataclass
class WanConditioning:
    """What the sampler feeds the DiT besides the noisy latents. Normalised-latent space throughout.
    Conditioning builders (StoryMem, Block Scene, ReCo, montage, Spatia) only fill these fields."""
    prompt_embeds: torch.Tensor                      # [B, 512, text_dim]
    negative_embeds: Optional[torch.Tensor] = None   # [B, 512, text_dim] (None → no CFG)
    image_embeds: Optional[torch.Tensor] = None      # CLIP penultimate tokens for Wan2.1 I2V
    concat_latents: Optional[torch.Tensor] = None    # I2V: [B, 4 mask + 16, T, h, w] channel concat
    vace_context: Optional[torch.Tensor] = None      # VACE: [B, 96, T(+refs), h, w]
    vace_scale: float = 1.0
    num_ref_frames: int = 0                          # leading latent frames to drop after sampling
    clean_latents: Optional[torch.Tensor] = None     # [1,C,k,h,w]: first k latent frames kept clean, timestep 0
                                                     # (Wan2.2 TI2V first frame; history/reference frames)
    holds: list = field(default_factory=list)        # [HeldRegion] over the full latent (refs included)
    clean_token_mask: Optional[torch.Tensor] = None  # [1, T, h, w] 1 = clean token: per-token timestep 0
    rope_positions: Optional[torch.Tensor] = None    # temporal RoPE position per latent frame (refs included)
    rope_h_offsets: Optional[torch.Tensor] = None    # per latent frame: row offset (Spatia's shifted refs)
    rope_w_offsets: Optional[torch.Tensor] = None
    attention: list = field(default_factory=list)    # [model -> context manager]: attention processors
    extra: dict = field(default_factory=dict)        # inputs of a model adapter (InfCam: source latents, cameras)
    guidance: Optional[Guidance] = None              # multi-term guidance (replaces the settings' CFG scale)
    windows: Optional[object] = None                 # windows.ContextWindows: sample long clips window by window


def clean_prompt(text: str) -> str:
    return re.sub(r"\s+", " ", (text or "")).strip()


_TEXT_CACHE: "OrderedDict[tuple, torch.Tensor]" = OrderedDict()
TEXT_CACHE_SIZE = 64


@torch.no_grad()
def encode_text(handle: WanHandle, prompts, max_length: int = TEXT_LEN, return_mask: bool = False):
    """UMT5 last hidden state, zeroed past each prompt's length and padded to 512 (Wan's convention).
    `return_mask`: also the attention mask [B, max_length] (1 on each prompt's tokens), for trainers.

    The one text-encode path of every Wan-based node: prompts are cleaned the same way everywhere, and each
    (encoder, prompt) pair is encoded once per process (a re-run with the same prompt skips UMT5 entirely)."""
    if isinstance(prompts, str):
        prompts = [prompts]
    if handle.tokenizer is None or not handle.has("text_encoder"):
        raise ValueError("this Wan handle was loaded without a text encoder")
    cleaned = [clean_prompt(p) for p in prompts]
    base = (handle.keys["text_encoder"], id(handle.tokenizer), max_length)
    todo = [p for p in dict.fromkeys(cleaned) if base + (p,) not in _TEXT_CACHE]
    if todo:
        wait_for_warm_up(handle.keys["text_encoder"])
        tok = handle.tokenizer(todo, padding="max_length", max_length=max_length, truncation=True,
                               add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
        with handle.use("text_encoder") as enc:
            ids, mask = tok.input_ids.to(handle.device), tok.attention_mask.to(handle.device)
            hidden = enc(ids, mask).last_hidden_state
        for i, (p, n) in enumerate(zip(todo, mask.sum(dim=1).tolist())):
            row = torch.zeros(max_length, hidden.shape[-1], dtype=torch.float32)
            row[:n] = hidden[i, :n].float().cpu()
            _TEXT_CACHE[base + (p,)] = (row, n)
            while len(_TEXT_CACHE) > TEXT_CACHE_SIZE:
                _TEXT_CACHE.popitem(last=False)
    out, mask = [], torch.zeros(len(cleaned), max_length, dtype=torch.long)
    for i, p in enumerate(cleaned):
        _TEXT_CACHE.move_to_end(base + (p,))
        row, n = _TEXT_CACHE[base + (p,)]
        out.append(row)
        mask[i, :n] = 1
    embeds = torch.stack(out).clone()
    return (embeds, mask) if return_mask else embeds


# ---- VAE -----------------------------------------------------------------------------------------
def _stats(handle: WanHandle, device, dtype=torch.float32):
    # a Wan handle, or a bare diffusers AutoencoderKLWan (its config carries the same statistics)
    cfg = handle.vae_config if hasattr(handle, "vae_config") else handle.config
    c = cfg.z_dim
    mean = torch.tensor(cfg.latents_mean, dtype=dtype, device=device).view(1, c, 1, 1, 1)
    std = torch.tensor(cfg.latents_std, dtype=dtype, device=device).view(1, c, 1, 1, 1)
    return mean, std


def normalize(handle: WanHandle, raw: torch.Tensor) -> torch.Tensor:
    mean, std = _stats(handle, raw.device)
    return (raw.float() - mean) / std


def denormalize(handle: WanHandle, latents: torch.Tensor) -> torch.Tensor:
    mean, std = _stats(handle, latents.device)
    return latents.float() * std + mean


def images_to_video(frames: torch.Tensor) -> torch.Tensor:
    """IMAGE [F,H,W,C] 0..1 → [1,C,F,H,W] in -1..1 (what the Wan VAE expects)."""
    return (frames[..., :3].permute(3, 0, 1, 2).unsqueeze(0).float() * 2.0 - 1.0)


def video_to_images(video: torch.Tensor) -> torch.Tensor:
    """[B,C,F,H,W] -1..1 → IMAGE [B·F,H,W,C] 0..1."""
    return ((video.float().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 4, 1).reshape(
        -1, video.shape[3], video.shape[4], video.shape[1])


@contextmanager
def _vae_on_device(handle: WanHandle, tiled: bool):
    """The VAE on the compute device, tiled for the block when asked (and untiled again after)."""
    with handle.use("vae") as vae:
        if tiled and hasattr(vae, "enable_tiling"):
            vae.enable_tiling()
        try:
            yield vae
        finally:
            if tiled and hasattr(vae, "disable_tiling"):
                vae.disable_tiling()


@torch.no_grad()
def vae_encode(handle: WanHandle, video: torch.Tensor, tiled: bool = False) -> torch.Tensor:
    """[B,3,F,H,W] in -1..1 → raw latents [B,16,(F-1)/4+1,H/8,W/8] (the distribution's mode)."""
    with _vae_on_device(handle, tiled) as vae:
        dist = vae.encode(video.to(handle.device, next(vae.parameters()).dtype)).latent_dist
        return dist.mode().float().cpu()


@torch.no_grad()
def vae_decode(handle: WanHandle, raw: torch.Tensor, tiled: bool = False) -> torch.Tensor:
    """Raw latents → video [B,3,F,H,W] in -1..1."""
    with _vae_on_device(handle, tiled) as vae:
        return vae.decode(raw.to(handle.device, next(vae.parameters()).dtype)).sample.float().cpu()


@torch.no_grad()
def vae_decode_images(handle: WanHandle, raw: torch.Tensor, tiled: bool = False) -> torch.Tensor:
    """Raw latents → IMAGE [B·F,H,W,C] 0..1 on the CPU. Clamp, scale and the channels-last copy run on the
    device, so the frames cross the bus once and no CPU pass over ~400 MB (81 frames at 480p) follows."""
    from . import vae_fast
    with _vae_on_device(handle, tiled) as vae:
        z = raw.to(handle.device, next(vae.parameters()).dtype)
        if tiled:  # diffusers' tiled decode (VRAM-bound sizes)
            return video_to_images(vae.decode(z).sample).cpu()
        return video_to_images(vae_fast.decode(vae, z, vae_fast.default_options(handle.device))).cpu()


def latent_shape(handle: WanHandle, frames: int, height: int, width: int, batch: int = 1) -> tuple:
    st, ss = handle.scale_temporal, handle.scale_spatial
    return (batch, handle.latent_channels, (frames - 1) // st + 1, height // ss, width // ss)


def check_size(node: str, frames: int, height: int, width: int, handle: WanHandle) -> None:
    st, ss = handle.scale_temporal, handle.scale_spatial
    if (frames - 1) % st:
        raise runtime.NodeInputError(node, "length", f"frames must be {st}·k+1 (e.g. 81), got {frames}")
    for name, v in (("height", height), ("width", width)):
        if v % (ss * 2):
            raise runtime.NodeInputError(node, name, f"must be a multiple of {ss * 2}, got {v}")
    from ..common import budget  # the decoded clip alone; refused before any latent is made
    budget.check(node, "length", (frames, height, width, 3), "the decoded clip")


def resize_bicubic(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """IMAGE [N, H, W, 3] -> [N, height, width, 3] (bicubic, like StoryMem's memory resize)."""
    if images.shape[1] == height and images.shape[2] == width:
        return images
    x = images.permute(0, 3, 1, 2)
    x = F.interpolate(x, size=(height, width), mode="bicubic", align_corners=False)
    return x.clamp(0, 1).permute(0, 2, 3, 1)


def latent_frames(handle: WanHandle, frames: int) -> int:
    return (frames - 1) // handle.scale_temporal + 1


def resize_frames(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """IMAGE [F,H,W,C] → [F,height,width,C] (bilinear, antialiased)."""
    if frames.shape[1] == height and frames.shape[2] == width:
        return frames
    x = frames.permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    return x.permute(0, 2, 3, 1).clamp(0, 1)


# ---- I2V -----------------------------------------------------------------------------------------
@torch.no_grad()
def clip_image_tokens(handle: WanHandle, image: torch.Tensor) -> torch.Tensor:
    """IMAGE [N,H,W,C] → CLIP vision penultimate hidden states [1, N·tokens, dim] (Wan2.1 I2V image context)."""
    with handle.use("image_encoder") as enc:
        size = enc.config.image_size
        x = image[..., :3].permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
        mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
        x = ((x - mean) / std).to(handle.device, next(enc.parameters()).dtype)
        hidden = enc(pixel_values=x, output_hidden_states=True).hidden_states[-2]
    return hidden.float().cpu().reshape(1, -1, hidden.shape[-1])


def i2v_concat(handle: WanHandle, frames: int, height: int, width: int, first: Optional[torch.Tensor],
               last: Optional[torch.Tensor] = None, tiled: bool = False) -> torch.Tensor:
    """[1, 4+16, T, h, w]: a 4-channel mask (1 = given frame; the first frame's mask repeated ×4 to fold pixel
    frames into latent frames) + normalised latents of (first frame, zeros…, last frame)."""
    video = torch.zeros(1, 3, frames, height, width)
    mask = torch.zeros(1, 1, frames, height // handle.scale_spatial, width // handle.scale_spatial)
    if first is not None:
        video[:, :, 0] = images_to_video(resize_frames(first[:1], height, width))[:, :, 0]
        mask[:, :, 0] = 1
    if last is not None:
        video[:, :, -1] = images_to_video(resize_frames(last[:1], height, width))[:, :, 0]
        mask[:, :, -1] = 1
    latents = normalize(handle, vae_encode(handle, video, tiled))
    st = handle.scale_temporal
    mask = torch.cat([mask[:, :, :1].repeat_interleave(st, dim=2), mask[:, :, 1:]], dim=2)
    mask = mask.view(1, -1, st, mask.shape[3], mask.shape[4]).transpose(1, 2)   # [1, 4, T, h, w]
    return torch.cat([mask, latents], dim=1)


def first_frame_latents(handle: WanHandle, image: torch.Tensor, height: int, width: int,
                        tiled: bool = False) -> torch.Tensor:
    """Normalised latent of one image encoded as a 1-frame video: TI2V-5B's clean first frame."""
    video = images_to_video(resize_frames(image[:1], height, width))
    return normalize(handle, vae_encode(handle, video, tiled))


# ---- VACE ----------------------------------------------------------------------------------------
def vace_mask_latents(mask: torch.Tensor, scale_spatial: int = 8, scale_temporal: int = 4,
                      temporal: str = "nearest") -> torch.Tensor:
    """Pixel mask [F, H, W] (1 = generate) → VACE mask channels [64, T, H/8, W/8] (each 8×8 patch folded into
    channels). temporal "nearest": Wan VACE / diffusers / DiffSynth's nearest-exact resampling to (F+3)//4 frames,
    what the published VACE weights (and ReCo's LoRA) were trained with; "group": latent frame t takes the max over
    the pixel frames the causal VAE packs into it (0; 4t-3..4t), so a keyframe constraint lands on exactly one
    latent frame (Block Scene, keyframe montage)."""
    frames, height, width = mask.shape
    ss = scale_spatial
    h, w = height // ss, width // ss
    t_lat = (frames + scale_temporal - 1) // scale_temporal
    mk = mask[:, :h * ss, :w * ss].reshape(frames, h, ss, w, ss).permute(2, 4, 0, 1, 3).reshape(ss * ss, frames, h, w)
    if temporal == "nearest":
        return F.interpolate(mk[None], size=(t_lat, h, w), mode="nearest-exact")[0]
    if temporal != "group":
        raise ValueError(f"temporal must be 'nearest' or 'group', got {temporal!r}")
    st = scale_temporal
    return torch.stack([mk[:, 0]] + [mk[:, st * t - st + 1:st * t + 1].amax(dim=1) for t in range(1, t_lat)], dim=1)


def fit_reference(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """IMAGE [1,H,W,C] → [1,3,1,height,width] in -1..1: scaled to fit inside, centred on white (diffusers'
    WanVACEPipeline reference-image layout: an object picture, not a video frame)."""
    img = image[:1, ..., :3].permute(0, 3, 1, 2).float() * 2 - 1
    ih, iw = img.shape[-2:]
    scale = min(height / ih, width / iw)
    nh, nw = max(1, int(ih * scale)), max(1, int(iw * scale))
    img = F.interpolate(img, size=(nh, nw), mode="bilinear", align_corners=False)
    canvas = torch.ones(1, 3, height, width)
    top, left = (height - nh) // 2, (width - nw) // 2
    canvas[:, :, top:top + nh, left:left + nw] = img
    return canvas[:, :, None]


def vace_context_from_video(handle: WanHandle, video: torch.Tensor, mask: torch.Tensor,
                            references: Optional[torch.Tensor] = None, temporal: str = "nearest",
                            tiled: bool = False):
    """VACE control input from video [1,3,F,H,W] (-1..1) and a binary mask [F,H,W] (1 = generate):
    [inactive 16 | reactive 16 | mask 64] channels; references [R,3,1,H,W] (-1..1) are encoded one latent frame
    each and prepended with mask 0. Returns (context [1,96,R+T,h,w], R)."""
    m = mask[None, None].to(video)
    inactive = normalize(handle, vae_encode(handle, video * (1 - m), tiled))
    reactive = normalize(handle, vae_encode(handle, video * m, tiled))
    latents = torch.cat([inactive, reactive], dim=1)
    mk = vace_mask_latents(mask.float(), handle.scale_spatial, handle.scale_temporal, temporal)
    n_ref = 0
    if references is not None and references.shape[0] > 0:
        refs = []
        for i in range(references.shape[0]):
            lat = normalize(handle, vae_encode(handle, references[i:i + 1], tiled))
            refs.append(torch.cat([lat, torch.zeros_like(lat)], dim=1))
        n_ref = len(refs)
        latents = torch.cat(refs + [latents], dim=2)
        mk = torch.cat([torch.zeros_like(mk[:, :n_ref]), mk], dim=1)
    return torch.cat([latents, mk[None].to(latents)], dim=1), n_ref


def vace_context(handle: WanHandle, frames: int, height: int, width: int,
                 control: Optional[torch.Tensor] = None, mask: Optional[torch.Tensor] = None,
                 references: Optional[torch.Tensor] = None, tiled: bool = False):
    """VACE control input from IMAGE/MASK inputs: control IMAGE [F,H,W,C] (missing → zeros, i.e. free generation);
    mask MASK [F,H,W] 1 = generate (missing → all ones; one [H,W] mask is held for every frame); references IMAGE
    [R,H,W,C] (each resized to the frame). Returns (context [1,96,R+T,h,w], R)."""
    video = torch.zeros(1, 3, frames, height, width)
    if control is not None:
        control = resize_frames(control[:frames], height, width)
        video[:, :, :control.shape[0]] = images_to_video(control)
    if mask is None:
        m = torch.ones(frames, height, width)
    else:
        mask = mask[None] if mask.dim() == 2 else mask  # one [H, W] mask: held for every frame
        m = F.interpolate(mask[:frames, None].float(), size=(height, width), mode="nearest")[:, 0]
        m = torch.cat([m, m[-1:].expand(frames - m.shape[0], -1, -1)], 0) if m.shape[0] < frames else m
        m = (m > 0.5).float()
    refs = None
    if references is not None and references.shape[0] > 0:
        refs = torch.stack([images_to_video(resize_frames(references[i:i + 1], height, width))[0]
                            for i in range(references.shape[0])])
    return vace_context_from_video(handle, video, m, refs, "nearest", tiled)
