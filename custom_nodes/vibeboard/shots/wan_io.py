"""Wan VAE in/out helpers shared by the Shot Studio mechanisms.

Latents here are *normalised* ((z - mean) / std, what the transformer sees). ComfyUI's LATENT for Wan holds the
raw VAE latents, so nodes convert with `to_raw` / `from_raw` at the boundary.
Pixels: IMAGE [F, H, W, 3] in 0..1 at the node boundary, video [B, 3, F, H, W] in -1..1 for the VAE.
"""
from __future__ import annotations

import torch


def _stats(vae, device, dtype=torch.float32):
    cfg = vae.config
    z = cfg.z_dim
    mean = torch.tensor(cfg.latents_mean, device=device, dtype=dtype).view(1, z, 1, 1, 1)
    std = torch.tensor(cfg.latents_std, device=device, dtype=dtype).view(1, z, 1, 1, 1)
    return mean, std


def to_raw(vae, z: torch.Tensor) -> torch.Tensor:
    mean, std = _stats(vae, z.device)
    return z.float() * std + mean


def from_raw(vae, raw: torch.Tensor) -> torch.Tensor:
    mean, std = _stats(vae, raw.device)
    return (raw.float() - mean) / std


def _vae_dtype(vae):
    return next(vae.parameters()).dtype


def _vae_device(vae):
    return next(vae.parameters()).device


@torch.no_grad()
def encode_video(vae, video: torch.Tensor) -> torch.Tensor:
    """[B, 3, F, H, W] in -1..1 -> normalised latents [B, 16, (F-1)//4+1, H/8, W/8] (distribution mode)."""
    raw = vae.encode(video.to(_vae_device(vae), _vae_dtype(vae))).latent_dist.mode()
    return from_raw(vae, raw)


@torch.no_grad()
def encode_images_as_frames(vae, images: torch.Tensor) -> torch.Tensor:
    """N images [N, 3, H, W] in -1..1, each encoded alone (one latent frame each) -> [1, 16, N, h, w]."""
    lat = encode_video(vae, images.unsqueeze(2))  # [N, 16, 1, h, w]
    return lat.squeeze(2).permute(1, 0, 2, 3).unsqueeze(0)


@torch.no_grad()
def decode_latents(vae, z: torch.Tensor) -> torch.Tensor:
    """normalised latents [B, 16, T, h, w] -> video [B, 3, 4(T-1)+1, 8h, 8w] in -1..1."""
    out = vae.decode(to_raw(vae, z.to(_vae_device(vae))).to(_vae_dtype(vae))).sample
    return out.float().clamp(-1, 1)


def image_to_video(images: torch.Tensor) -> torch.Tensor:
    """ComfyUI IMAGE [F, H, W, 3] 0..1 -> [1, 3, F, H, W] -1..1."""
    return (images.float().permute(3, 0, 1, 2).unsqueeze(0) * 2 - 1)


def latent_frames(num_frames: int) -> int:
    return (num_frames - 1) // 4 + 1


def resize_images(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """IMAGE [N, H, W, 3] -> [N, height, width, 3] (bicubic, like StoryMem's memory resize)."""
    if images.shape[1] == height and images.shape[2] == width:
        return images
    x = images.permute(0, 3, 1, 2)
    x = torch.nn.functional.interpolate(x, size=(height, width), mode="bicubic", align_corners=False)
    return x.clamp(0, 1).permute(0, 2, 3, 1)
