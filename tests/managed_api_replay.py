"""The managed-API tests' replay server and helpers. The server is the pack's one loopback replay server
(vibeboard.common.replay_server.ReplayServer: ordered interactions, 599 on a miss, record mode); this file
re-exports it, loads the cassettes in tests/data/managed_api/ and makes tiny media.
"""
from __future__ import annotations

import io
import json
import os

from vibeboard.common.replay_server import ReplayServer, load_recording  # noqa: F401  (re-exported for the tests)

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "managed_api")


def load_cassette(name: str, key: str = "") -> list:
    """A file's `interactions`, or one named entry of its `cassettes`."""
    with open(os.path.join(DATA, name)) as handle:
        data = json.load(handle)
    return data["cassettes"][key] if key else data["interactions"]


# --- helpers shared by the managed-API tests (their fixtures api_env / fal_replay are in conftest.py) ---

FAL_KEY = "fal-test-key-0123456789"
XAI_KEY = "xai-test-key-9876543210"


def tiny_png(width=64, height=48, seed=0) -> bytes:
    import numpy as np
    from PIL import Image
    rgb = (np.random.RandomState(seed).rand(height, width, 3) * 255).astype("uint8")
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def tiny_mp4(path, frames=8, fps=8, width=32, height=24) -> bytes:
    """An H.264 + AAC clip written by the pack's own encoder (what a provider's MP4 decodes like)."""
    import numpy as np
    import torch
    from vibeboard.media import video
    images = torch.rand(frames, height, width, 3, generator=torch.Generator().manual_seed(0))
    sound = (0.1 * np.sin(np.linspace(0, 440 * 2 * np.pi, 16000))).astype("float32")[None]
    video.write_video(str(path), images, fps, preset="ultrafast", audio=(sound, 16000))
    with open(path, "rb") as handle:
        return handle.read()


def ledger_rows(tmp_path):
    from vibeboard.managed_api import costs
    return [dict(r) for r in costs.Ledger(str(tmp_path / "costs.sqlite")).rows()]


def output_files(tmp_path):
    root = tmp_path / "output"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []
