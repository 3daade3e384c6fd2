"""Generated test media (no files on disk needed): frames whose colours encode the clip and frame number, and
tones with an optional clap blip. Used by the Test Clip node and the tests."""
from __future__ import annotations

import numpy as np


def coded_frames(frames, width=64, height=48, clip_id=0, flash_frame=None, black=(), freeze=()):
    """uint8 frames: green level = 4 × frame number, blue level = clip id; a textured corner (so a still
    picture is a freeze only where frames repeat); white at `flash_frame`; black at `black`; `freeze` pairs
    (a, b) repeat frame a through b."""
    out = []
    for i in range(frames):
        img = np.zeros((height, width, 3), dtype=np.uint8)
        img[..., 0] = 120
        img[..., 1] = (i * 4) % 256
        img[..., 2] = 40 + clip_id * 60
        img[: height // 4, : width // 4] = (i * 37) % 256
        if flash_frame is not None and i == flash_frame:
            img[:] = 255
        if i in black:
            img[:] = 0
        out.append(img)
    for a, b in freeze:
        for i in range(a + 1, b + 1):
            out[i] = out[a].copy()
    return out


def tone(seconds, rate=48000, freq=220.0, level=0.1, blip_at=None, blip_len=0.02):
    """Stereo float32 [2, N]: a quiet sine; with `blip_at` silence and a loud 1 kHz blip starting there."""
    t = np.arange(int(round(seconds * rate))) / rate
    wave = level * np.sin(2 * np.pi * freq * t)
    if blip_at is not None:
        wave[:] = 0.0
        a = int(round(blip_at * rate))
        b = min(a + int(blip_len * rate), len(wave))
        wave[a:b] = 0.8 * np.sin(2 * np.pi * 1000.0 * t[: b - a])
    return np.stack([wave, wave]).astype(np.float32)
