"""Continuity guard for performances (what the anchors lack), reported as Dailies machine notes.

- Lip sync: a mouth-open envelope from the frames vs the speech envelope of the audio (RMS per video frame, gated
  by silero-vad so breaths and room tone do not count) → the lag in frames with the best normalised
  cross-correlation; more than one frame is flagged. Positive = the picture is late.
- Identity drift: image embeddings (a transformers vision model, e.g. CLIP/DINOv2 — ArcFace packs are
  non-commercial) of sampled frames vs the actor card's face references; frames whose similarity falls below
  `threshold` × the references' own mutual similarity are flagged with their frame range.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence

import numpy as np
import torch


# ---- lip sync ----------------------------------------------------------------------------------------------------
def mouth_open_envelope(frames: torch.Tensor, box=(0.3, 0.6, 0.7, 0.85)) -> np.ndarray:
    """Per frame, how much of the mouth box is dark cavity: the share of pixels darker than half the face's
    median luma. `box` = (x0, y0, x1, y1) as fractions of a face-centred frame (FlashPortrait's output is)."""
    luma = (frames[..., 0] * 0.299 + frames[..., 1] * 0.587 + frames[..., 2] * 0.114).float()
    _, h, w = luma.shape
    x0, y0, x1, y1 = int(box[0] * w), int(box[1] * h), int(box[2] * w), int(box[3] * h)
    mouth = luma[:, y0:y1, x0:x1].reshape(luma.shape[0], -1)
    ref = luma.reshape(luma.shape[0], -1).median(dim=1).values[:, None]
    return (mouth < ref * 0.5).float().mean(dim=1).numpy()


def speech_envelope(waveform: np.ndarray, rate: int, fps: float, frames: int, use_vad: bool = True) -> np.ndarray:
    """RMS of the audio under each video frame, zero outside speech (silero-vad at 16 kHz) when available."""
    mono = waveform.mean(axis=0) if waveform.ndim == 2 else waveform
    env = np.zeros(frames, np.float32)
    for i in range(frames):
        a, b = int(round(i / fps * rate)), int(round((i + 1) / fps * rate))
        seg = mono[a:b]
        env[i] = float(np.sqrt(np.mean(seg ** 2))) if seg.size else 0.0
    if use_vad:
        gate = _vad_gate(mono, rate, fps, frames)
        if gate is not None:
            env *= gate
    return env


def _vad_gate(mono: np.ndarray, rate: int, fps: float, frames: int) -> Optional[np.ndarray]:
    try:
        from silero_vad import get_speech_timestamps, load_silero_vad
    except ImportError:
        return None
    from .performance import to_48k
    wav16 = to_48k(mono[None].astype(np.float32), rate)[0][0][::3]  # 48 kHz → 16 kHz (integer decimation)
    stamps = get_speech_timestamps(torch.from_numpy(np.ascontiguousarray(wav16)), load_silero_vad(),
                                   sampling_rate=16000, return_seconds=True)
    gate = np.zeros(frames, np.float32)
    for s in stamps:
        gate[int(s["start"] * fps):int(np.ceil(s["end"] * fps)) + 1] = 1.0
    return gate


def best_lag(mouth: np.ndarray, speech: np.ndarray, max_lag: int = 12) -> tuple:
    """(lag in frames, correlation): mouth[t] best matches speech[t − lag]."""
    def z(x):
        x = x - x.mean()
        return x / (np.linalg.norm(x) + 1e-9)
    best, best_c = 0, -2.0
    n = len(mouth)
    for lag in range(-max_lag, max_lag + 1):
        a = mouth[max(0, lag):n + min(0, lag)]
        b = speech[max(0, -lag):n - max(0, lag)]
        if len(a) < 4:
            continue
        c = float(np.dot(z(a), z(b)))
        if c > best_c:
            best, best_c = lag, c
    return best, best_c


def lipsync_report(frames: torch.Tensor, waveform: np.ndarray, rate: int, fps: float, tolerance: int = 1,
                   max_lag: int = 12) -> dict:
    mouth = mouth_open_envelope(frames)
    speech = speech_envelope(waveform, rate, fps, frames.shape[0])
    lag, corr = best_lag(mouth, speech, max_lag)
    return {"offset_frames": lag, "correlation": corr, "flagged": abs(lag) > tolerance,
            "speech_frames": int((speech > 0).sum())}


# ---- identity drift ---------------------------------------------------------------------------------------------
def vision_embedder(model, image_size: int = 224) -> Callable[[torch.Tensor], torch.Tensor]:
    """IMAGE batch → L2-normalised embeddings with a transformers vision model (pooled output)."""
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)

    @torch.no_grad()
    def embed(images: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.interpolate(images.permute(0, 3, 1, 2).float(), size=image_size, mode="bilinear")
        dtype = next(model.parameters()).dtype
        out = model(pixel_values=((x - mean) / std).to(dtype))
        pooled = getattr(out, "image_embeds", None)
        if pooled is None:
            pooled = out.pooler_output
        return torch.nn.functional.normalize(pooled.float(), dim=-1)
    return embed


def identity_report(frames: torch.Tensor, references: torch.Tensor, embed: Callable, every: int = 8,
                    threshold: float = 0.85) -> dict:
    ref = embed(references)
    baseline = 1.0 if ref.shape[0] < 2 else float((ref @ ref.T)[~torch.eye(ref.shape[0], dtype=torch.bool)].mean())
    idx = list(range(0, frames.shape[0], max(1, every)))
    emb = embed(frames[idx])
    sims = (emb @ ref.T).max(dim=1).values
    low = [(i, float(s)) for i, s in zip(idx, sims) if float(s) < threshold * baseline]
    ranges = []
    for i, _ in low:
        if ranges and i - ranges[-1][1] <= every:
            ranges[-1][1] = min(i + every - 1, frames.shape[0] - 1)
        else:
            ranges.append([i, min(i + every - 1, frames.shape[0] - 1)])
    return {"baseline": baseline, "similarity": [float(s) for s in sims], "frames": idx, "drift_ranges": ranges}


# ---- Dailies --------------------------------------------------------------------------------------------------
def notes_for(lipsync: Optional[dict], identity: Optional[dict], frames: int, actor: str = "") -> List[dict]:
    notes = []
    if lipsync and lipsync["flagged"]:
        late = "late" if lipsync["offset_frames"] > 0 else "early"
        notes.append({"kind": "lipsync", "start_frame": 0, "end_frame": frames - 1,
                      "text": f"Lip sync: picture {abs(lipsync['offset_frames'])} frames {late} against the speech "
                              f"(correlation {lipsync['correlation']:.2f}; tolerance 1 frame)"})
    for a, b in (identity or {}).get("drift_ranges", []):
        notes.append({"kind": "identity", "start_frame": a, "end_frame": b,
                      "text": f"Identity drift: frames {a}–{b} look less like {actor or 'the actor card'} "
                              f"than the card's references (baseline {identity['baseline']:.2f})"})
    return notes


def attach(store, version_id: str, notes: Sequence[dict]) -> List[dict]:
    return [store.add_note(version_id, n["text"], n["start_frame"], n["end_frame"], author="foundry",
                           kind="machine") for n in notes]
