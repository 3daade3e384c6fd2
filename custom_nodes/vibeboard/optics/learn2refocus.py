"""Learn2Refocus (Adobe / York U., SIGGRAPH Asia 2025, arXiv 2512.19823): one photo → a 9-slice focal stack.

A fully fine-tuned Stable Video Diffusion img2vid UNet (diffusers `UNetSpatioTemporalConditionModel`) that
generates the stack as a 9-frame "video". Conditioning (as in the authors' simplified pipeline):
- the input photo is placed at its focal index k of 9 frames; every frame is VAE-encoded (mode, unscaled
  latents as SVD uses them) and the conditioning latents keep **only frame k** (zeros elsewhere); they
  are concatenated on channels to the noisy latents (4 + 4 = 8 input channels);
- CLIP image embedding of the photo; SVD added_time_ids (fps − 1, motion bucket, noise-aug strength);
- CFG with zero image latents / zero embeddings as the unconditional branch and a per-frame guidance
  scale ramping linearly from min to max over the 9 frames; Euler (v-prediction, Karras sigmas) as SVD.
Images are resized so H·W ≤ 500k pixels with sides multiples of 64 (the authors' preprocessing).

Inference settings are the authors' (`simple_inference.py::inference_on_image`): motion bucket 0, noise
augmentation 0, fps 7, guidance 1.5 on every slice (min = max = 1.5), 25 steps. The scheduler is built from the
SVD folder's published `scheduler/scheduler_config.json` with `from_config` (as `DiffusionPipeline.from_pretrained`
does): that file carries keys EulerDiscreteScheduler's __init__ does not take (`clip_sample`, `set_alpha_to_one`,
`skip_prk_steps`), which `from_config` ignores and a plain `EulerDiscreteScheduler(**cfg)` rejects.

Weights: HF `tedlasai/learn2refocus` `checkpoint-200000/unet` (a diffusers folder: config.json +
diffusion_pytorch_model.safetensors) on top of `stabilityai/stable-video-diffusion-img2vid` (vae,
image_encoder, feature_extractor, scheduler).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F

NUM_SLICES = 9
DEFAULT_FOCAL_INDEX = 6  # the authors' default when the input's focal position is unknown
MAX_PIXELS = 500_000
DEFAULT_GUIDANCE = 1.5   # upstream: min_guidance_scale = max_guidance_scale = 1.5
DEFAULT_MOTION_BUCKET = 0
DEFAULT_NOISE_AUG = 0.0
DEFAULT_FPS = 7
# Used only when the SVD folder has no scheduler/scheduler_config.json (its published values).
SVD_SCHEDULER = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, interpolation_type="linear",
                     num_train_timesteps=1000, prediction_type="v_prediction", sigma_max=700.0, sigma_min=0.002,
                     steps_offset=1, timestep_spacing="leading", timestep_type="continuous", use_karras_sigmas=True)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class RefocusModel:
    unet: object           # UNetSpatioTemporalConditionModel (8 input channels)
    vae: object            # AutoencoderKLTemporalDecoder
    image_encoder: object  # CLIPVisionModelWithProjection
    scheduler_config: dict
    device: str = "cpu"
    dtype: torch.dtype = torch.float32

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)


def working_size(height: int, width: int, max_pixels: int = MAX_PIXELS, multiple: int = 64) -> tuple:
    """The authors' `find_scale`: shrink the scale in steps of 0.01 from 1.0 until the sides floored to multiples
    of 64 give at most `max_pixels` (a closed-form sqrt scale picks other sizes for some aspect ratios)."""
    scale = 1.0
    while True:
        h = math.floor(height * scale / multiple) * multiple
        w = math.floor(width * scale / multiple) * multiple
        if h * w <= max_pixels:
            return max(multiple, h), max(multiple, w)
        scale -= 0.01


def check_unet(unet) -> None:
    if unet.config.in_channels != 8:
        raise ValueError(f"not a Learn2Refocus/SVD img2vid UNet: {unet.config.in_channels} input channels (need 8)")


def load_refocus_unet(folder: str, dtype=torch.float16):
    """The fine-tuned UNet from `checkpoint-200000/unet` (or a folder containing `unet/`)."""
    from diffusers import UNetSpatioTemporalConditionModel

    if os.path.isdir(os.path.join(folder, "unet")):
        folder = os.path.join(folder, "unet")
    if not os.path.isfile(os.path.join(folder, "config.json")):
        raise FileNotFoundError(f"no UNet config.json in {folder}")
    if not any(n.endswith(".safetensors") for n in os.listdir(folder)):
        raise FileNotFoundError(f"no .safetensors weights in {folder} (pickled .bin files are not read)")
    unet = UNetSpatioTemporalConditionModel.from_pretrained(folder, torch_dtype=dtype, use_safetensors=True)
    check_unet(unet)
    return unet.eval()


def load_svd_parts(svd_folder: str, dtype=torch.float16) -> tuple:
    """(vae, image_encoder, scheduler_config) from a diffusers stable-video-diffusion-img2vid folder. The
    scheduler config is the published file as it is (every key, `_class_name` included); see make_scheduler."""
    import json

    from diffusers import AutoencoderKLTemporalDecoder
    from transformers import CLIPVisionModelWithProjection

    vae = AutoencoderKLTemporalDecoder.from_pretrained(os.path.join(svd_folder, "vae"), torch_dtype=dtype,
                                                       use_safetensors=True)
    enc = CLIPVisionModelWithProjection.from_pretrained(os.path.join(svd_folder, "image_encoder"), dtype=dtype,
                                                        use_safetensors=True)
    sched_path = os.path.join(svd_folder, "scheduler", "scheduler_config.json")
    cfg = {"_class_name": "EulerDiscreteScheduler", **SVD_SCHEDULER}
    if os.path.isfile(sched_path):
        with open(sched_path) as fh:
            cfg = json.load(fh)
    return vae.eval(), enc.eval(), cfg


def make_scheduler(config: dict):
    """EulerDiscreteScheduler from a published scheduler_config.json dict (unknown keys ignored, as diffusers'
    pipelines do)."""
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler.from_config(config)


def stack_condition(latent: torch.Tensor, focal_index: int, num_frames: int = NUM_SLICES) -> torch.Tensor:
    """[B, C, h, w] image latent → [B, F, C, h, w] with the latent at `focal_index`, zeros elsewhere."""
    if not 0 <= focal_index < num_frames:
        raise ValueError(f"focal index {focal_index} outside 0..{num_frames - 1}")
    cond = latent.new_zeros(latent.shape[0], num_frames, *latent.shape[1:])
    cond[:, focal_index] = latent
    return cond


def clip_embedding(encoder, image: torch.Tensor) -> torch.Tensor:
    """IMAGE [1, H, W, 3] 0..1 → [1, 1, D] CLIP image embeds (224², antialiased resize, CLIP normalisation)."""
    x = image.permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(224, 224), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    x = ((x - mean) / std).to(encoder.device, encoder.dtype)
    return encoder(x).image_embeds[:, None]


@torch.no_grad()
def focal_stack(model: RefocusModel, image: torch.Tensor, focal_index: int = DEFAULT_FOCAL_INDEX, steps: int = 25,
                min_guidance: float = DEFAULT_GUIDANCE, max_guidance: float = DEFAULT_GUIDANCE,
                fps: int = DEFAULT_FPS, motion_bucket_id: int = DEFAULT_MOTION_BUCKET,
                noise_aug_strength: float = DEFAULT_NOISE_AUG, seed: int = 0, progress=None,
                num_frames: int = NUM_SLICES, size: tuple | None = None) -> torch.Tensor:
    """IMAGE [1, H, W, 3] → focal stack IMAGE [9, h, w, 3] (near → far focus), the input kept at focal_index.
    Defaults are the authors' inference settings."""
    unet, vae = model.unet, model.vae
    check_unet(unet)
    dev, dt = model.device, model.dtype
    h, w = size or working_size(image.shape[1], image.shape[2])
    x = F.interpolate(image.permute(0, 3, 1, 2).float(), size=(h, w), mode="bilinear", align_corners=False)
    z = vae.encode((x * 2 - 1).to(dev, vae.dtype)).latent_dist.mode().to(dt)  # unscaled, as SVD
    cond = stack_condition(z, focal_index, num_frames)
    cond = torch.cat([torch.zeros_like(cond), cond])
    emb = clip_embedding(model.image_encoder, image).to(dt)
    emb = torch.cat([torch.zeros_like(emb), emb])
    add_ids = torch.tensor([[fps - 1, motion_bucket_id, noise_aug_strength]], dtype=dt, device=dev).repeat(2, 1)
    sched = make_scheduler(model.scheduler_config)
    sched.set_timesteps(steps, device=dev)
    gen = torch.Generator("cpu").manual_seed(int(seed))
    f = model.vae_scale_factor
    latents = torch.randn(1, num_frames, unet.config.out_channels, h // f, w // f, generator=gen)
    latents = (latents * sched.init_noise_sigma).to(dev, dt)
    guidance = torch.linspace(min_guidance, max_guidance, num_frames, device=dev, dtype=dt).view(1, -1, 1, 1, 1)
    for t in sched.timesteps:
        inp = sched.scale_model_input(torch.cat([latents] * 2), t)
        inp = torch.cat([inp, cond], dim=2)
        noise = unet(inp, t, encoder_hidden_states=emb, added_time_ids=add_ids, return_dict=False)[0]
        uncond, condp = noise.chunk(2)
        noise = uncond + guidance * (condp - uncond)
        latents = sched.step(noise, t, latents).prev_sample
        if progress is not None:
            progress.update(1)
    frames = []
    for i in range(num_frames):  # decode one slice at a time (memory)
        d = vae.decode(latents[:, i].to(vae.dtype) / vae.config.scaling_factor, num_frames=1).sample
        frames.append(d)
    out = torch.cat(frames).float()
    return ((out + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).cpu()
