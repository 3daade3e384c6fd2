"""InfCam conditioning: source video + VB_CAMERA_PATH → what the InfCam adapter reads during sampling.

InfCam (vfx/infcam.py) is a model adapter on a VB_WAN handle; sampling is the one Wan sampler's (wan/sampler.py),
with the standard Wan text and sampler inputs. This module builds the per-shot inputs InfCam's pipeline gives its
DiT: the source latents (riding along clean with the same timestep as the target), the camera per latent frame
(every 4th pixel frame, relative to the source's first camera), the source intrinsics (f, f, W/2, H/2) and the
target's (the source's × zoom_factor).
"""
from __future__ import annotations

import torch

from ..wan import conditioning as C

# InfCam's inference settings (DiffSynth FlowMatchScheduler: Euler on shifted sigmas) when no sampler is wired.
DEFAULTS = dict(steps=50, cfg=5.0, shift=5.0, scheduler="flow_euler")
DEFAULT_NEGATIVE = ("色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，"
                    "JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，"
                    "手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走")  # Wan's standard negative


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


def infcam_conditioning(wan, text: dict, source: torch.Tensor, path, zoom_factor: float = 1.0,
                        translation_scale: float = 1.0) -> tuple[C.WanConditioning, tuple]:
    """(conditioning, latent shape) for re-rendering IMAGE `source` [T,H,W,3] along `path` with an InfCam handle."""
    source = fit_frames(source)
    t, h, w, _ = source.shape
    if t < 1 or h < 16 or w < 16:
        raise ValueError("source video too small (needs ≥ 1 frame of ≥ 16×16 pixels)")
    src_lat = C.normalize(wan, C.vae_encode(wan, C.images_to_video(source)))
    ext, k_src, k_trg = camera_inputs(path, t, w, h, zoom_factor, translation_scale)
    cond = C.WanConditioning(prompt_embeds=text["prompt_embeds"], negative_embeds=text.get("negative_embeds"),
                             extra={"infcam": {"source_latents": src_lat, "cam_extrinsic": ext,
                                               "intrinsic_src": k_src, "intrinsic_trg": k_trg}})
    return cond, tuple(src_lat.shape)
