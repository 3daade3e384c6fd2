"""InfCam sampling: source video + VB_CAMERA_PATH → re-rendered video (flow-matching Euler, CFG).

Mirrors InfCam's pipeline: source latents ride along clean with the same timestep as the target, the
camera is given per latent frame (every 4th pixel frame, relative to the source's first camera), the
source intrinsics are (f, f, W/2, H/2) and the target's are the source's × zoom_factor.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..common.runtime import check_interrupt, progress_bar

TEXT_LEN = 512
DEFAULT_NEGATIVE = ("色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，"
                    "JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，"
                    "手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走")  # Wan's standard negative


@dataclass
class InfCamHandle:
    """VB_INFCAM: the InfCam transformer plus the Wan parts the sampler needs."""
    model: object            # InfCamWan
    vae: object              # diffusers AutoencoderKLWan
    text_encoder: object     # transformers UMT5EncoderModel
    tokenizer: object
    device: str = "cpu"
    dtype: torch.dtype = torch.float32
    wan: object = None       # optional VB_WAN: its VAE / text encoder are used instead (VRAM-managed)

    def encode_text(self, prompts: list) -> torch.Tensor:
        if self.wan is not None:
            from ..wan import conditioning as C
            return C.encode_text(self.wan, prompts).to(self.device, self.dtype)
        return encode_prompt(self.text_encoder, self.tokenizer, prompts, self.device, self.dtype)

    def encode_video(self, frames: torch.Tensor) -> torch.Tensor:
        if self.wan is not None:
            from ..wan import conditioning as C
            raw = C.vae_encode(self.wan, C.images_to_video(frames))
            return C.normalize(self.wan, raw).to(self.device, self.dtype)
        return vae_encode(self.vae, frames, self.device, self.dtype)

    def decode_video(self, latents: torch.Tensor) -> torch.Tensor:
        if self.wan is not None:
            from ..wan import conditioning as C
            return C.video_to_images(C.vae_decode(self.wan, C.denormalize(self.wan, latents)))
        return vae_decode(self.vae, latents)


@torch.no_grad()
def encode_prompt(text_encoder, tokenizer, prompts: list, device, dtype) -> torch.Tensor:
    """UMT5 embeddings as Wan uses them: real tokens, zero-padded to 512."""
    enc = tokenizer(prompts, padding="max_length", max_length=TEXT_LEN, truncation=True,
                    add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
    ids, mask = enc.input_ids.to(device), enc.attention_mask.to(device)
    hidden = text_encoder(ids, mask).last_hidden_state.to(dtype)
    lens = mask.sum(dim=1)
    out = torch.zeros_like(hidden)
    for i, n in enumerate(lens.tolist()):
        out[i, :n] = hidden[i, :n]
    return out


def _latent_stats(vae, like: torch.Tensor):
    mean = torch.tensor(vae.config.latents_mean, dtype=like.dtype, device=like.device).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std, dtype=like.dtype, device=like.device).view(1, -1, 1, 1, 1)
    return mean, std


@torch.no_grad()
def vae_encode(vae, frames: torch.Tensor, device, dtype) -> torch.Tensor:
    """IMAGE [T, H, W, 3] 0..1 → normalised latents [1, 16, (T−1)/4+1, H/8, W/8]."""
    vae_dtype = next(vae.parameters()).dtype  # the loader keeps the VAE in bf16 when compute is fp16
    x = frames.permute(3, 0, 1, 2)[None].to(device, vae_dtype) * 2 - 1
    z = vae.encode(x).latent_dist.mode()
    mean, std = _latent_stats(vae, z)
    return ((z - mean) / std).to(dtype)


@torch.no_grad()
def vae_decode(vae, latents: torch.Tensor) -> torch.Tensor:
    latents = latents.to(next(vae.parameters()).dtype)
    mean, std = _latent_stats(vae, latents)
    video = vae.decode(latents * std + mean).sample  # [1, 3, T, H, W] in [-1, 1]
    return ((video[0].permute(1, 2, 3, 0).float() + 1) / 2).clamp(0, 1).cpu()


def flow_sigmas(steps: int, shift: float) -> torch.Tensor:
    """InfCam/DiffSynth FlowMatchScheduler(shift, sigma_min=0, extra_one_step=True): steps+1 sigmas, 1 → 0."""
    s = torch.linspace(1.0, 0.0, steps + 1)[:-1]
    s = shift * s / (1 + (shift - 1) * s)
    return torch.cat([s, torch.zeros(1)])


def camera_inputs(path, num_frames: int, width: int, height: int, zoom_factor: float = 1.0,
                  translation_scale: float = 1.0):
    """(extrinsics [1, F_lat, 12], K_src [1, 4], K_trg [1, 4]) in InfCam's conventions. translation_scale maps
    our scene units to the model's (InfCam's sample trajectories are in metres/100 of their renders)."""
    if len(path) != num_frames:
        path = path.resample(num_frames)
    path = path.scaled_to(width, height)
    ext, k = path.infcam_inputs()
    ext = ext.copy()
    ext[:, [3, 7, 11]] *= float(translation_scale)
    f = float(k[0, 0] + k[0, 1]) / 2  # InfCam uses one focal length (the mean of fx, fy)
    k_src = torch.tensor([[f, f, width / 2, height / 2]], dtype=torch.float32)
    k_trg = k_src * torch.tensor([zoom_factor, zoom_factor, 1.0, 1.0])
    return torch.tensor(ext, dtype=torch.float32)[None], k_src, k_trg


def fit_frames(frames: torch.Tensor) -> torch.Tensor:
    """Wan needs 4k+1 frames and sides divisible by 16: trim (never invent frames)."""
    t, h, w, _ = frames.shape
    t = (t - 1) // 4 * 4 + 1
    return frames[:t, : h // 16 * 16, : w // 16 * 16]


@torch.no_grad()
def change_camera(handle: InfCamHandle, source: torch.Tensor, path, prompt: str, negative_prompt: str = "",
                  steps: int = 50, cfg: float = 5.0, shift: float = 5.0, seed: int = 0,
                  zoom_factor: float = 1.0, progress=None, translation_scale: float = 1.0) -> torch.Tensor:
    """source IMAGE [T, H, W, 3] → IMAGE [T', H', W', 3] re-rendered along `path`."""
    source = fit_frames(source)
    t, h, w, _ = source.shape
    if t < 1 or h < 16 or w < 16:
        raise ValueError("source video too small (needs ≥ 1 frame of ≥ 16×16 pixels)")
    dev, dt = handle.device, handle.dtype
    model = handle.model
    src_lat = handle.encode_video(source)
    ext, k_src, k_trg = camera_inputs(path, t, w, h, zoom_factor, translation_scale)
    ext, k_src, k_trg = ext.to(dev), k_src.to(dev), k_trg.to(dev)
    pos = handle.encode_text([prompt])
    neg = handle.encode_text([negative_prompt or DEFAULT_NEGATIVE]) if cfg != 1.0 else None
    gen = torch.Generator("cpu").manual_seed(int(seed))
    latents = torch.randn(src_lat.shape, generator=gen, dtype=torch.float32).to(dev, dt)
    sigmas = flow_sigmas(steps, shift)
    bar = progress or progress_bar(steps)
    for i in range(steps):
        check_interrupt()
        timestep = torch.tensor([float(sigmas[i]) * 1000.0], device=dev, dtype=dt)
        args = dict(source_latents=src_lat, timestep=timestep, cam_extrinsic=ext,
                    intrinsic_src=k_src, intrinsic_trg=k_trg)
        v = model(latents, encoder_hidden_states=pos, **args)
        if neg is not None:
            v_neg = model(latents, encoder_hidden_states=neg, **args)
            v = v_neg + cfg * (v - v_neg)
        latents = (latents.float() + (sigmas[i + 1] - sigmas[i]) * v.float()).to(dt)
        bar.update(1)
    return handle.decode_video(latents)
