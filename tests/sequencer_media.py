"""Tiny real media for the Sequencer/Dailies tests, written with PyAV (no fixtures on disk)."""
import numpy as np

from vibeboard.media import video as video_io


def coded_frames(frames, width=64, height=48, clip_id=0, flash_frame=None, black=(), freeze=()):
    """uint8 frames whose green level encodes the source frame number (4 levels a frame) and whose blue level
    the clip id, so a decoded frame tells which clip and source frame it came from."""
    out = []
    for i in range(frames):
        img = np.zeros((height, width, 3), dtype=np.uint8)
        img[..., 0] = 40
        img[..., 1] = (i * 4) % 256
        img[..., 2] = 40 + clip_id * 60
        img[: height // 4, : width // 4] = (i * 37) % 256  # texture: keeps freezedetect from seeing a freeze
        if flash_frame is not None and i == flash_frame:
            img[:] = 255
        if i in black:
            img[:] = 0
        out.append(img)
    for a, b in freeze:  # frames a..b repeat frame a
        for i in range(a + 1, b + 1):
            out[i] = out[a].copy()
    return out


def tone(seconds, rate=48000, freq=220.0, level=0.1, blip_at=None, blip_len=0.02):
    """Stereo float32 [2, N]: a quiet sine; with `blip_at` a loud 1 kHz blip starting exactly there."""
    t = np.arange(int(round(seconds * rate))) / rate
    wave = level * np.sin(2 * np.pi * freq * t)
    if blip_at is not None:
        wave[:] = 0.0
        a = int(round(blip_at * rate))
        b = a + int(blip_len * rate)
        wave[a:b] = 0.8 * np.sin(2 * np.pi * 1000.0 * t[: b - a])
    return np.stack([wave, wave]).astype(np.float32)


def write_clip(path, frames=48, fps=24, clip_id=0, audio=None, **kw):
    video_io.write_video(str(path), coded_frames(frames, clip_id=clip_id, **kw), fps, crf=0, preset="ultrafast",
                         audio=audio)
    return str(path)


def decoded_codes(path):
    """(clip_id, source frame) of every decoded frame of `path`, read from its flat colour levels."""
    codes = []
    for _, rgb in video_io.iter_video_frames(str(path)):
        h, w = rgb.shape[:2]
        patch = rgb[h // 2:, w // 2:].reshape(-1, 3).mean(axis=0)
        codes.append((float(patch[2] - 40) / 60.0, float(patch[1]) / 4.0))
    return codes
