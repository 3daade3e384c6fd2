"""Sample inputs the shipped workflows name, so every workflow validates on a fresh clone.

Files in `workflows/inputs/` are copied into the input folder; the two pictures Shot Studio loads are drawn here
(no binary in the repository): `character.png` (a figure in a yellow raincoat, the StoryMem reference) and
`set_depth.png` (an inverse-depth ramp for the location memory). Existing files are never overwritten: a user's own
`character.png` stays.
"""
from __future__ import annotations

import os
import shutil

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
SHIPPED_DIR = os.path.join(REPO_ROOT, "workflows", "inputs")
SIZE = (832, 480)  # Shot Studio's shot size (W, H)


def draw_character(path: str, size=SIZE) -> None:
    """A simple, recognisable subject: grey dusk background, a figure in a yellow raincoat with a lantern."""
    from PIL import Image, ImageDraw

    w, h = size
    img = Image.new("RGB", (w, h), (70, 78, 92))
    d = ImageDraw.Draw(img)
    d.rectangle([0, int(h * 0.8), w, h], fill=(52, 48, 44))                      # floor
    cx = w // 2
    d.ellipse([cx - 28, int(h * 0.18), cx + 28, int(h * 0.18) + 56], fill=(224, 186, 150))   # face
    d.polygon([(cx - 40, int(h * 0.16)), (cx + 40, int(h * 0.16)), (cx, int(h * 0.08))], fill=(236, 196, 40))  # hood
    d.polygon([(cx - 70, int(h * 0.8)), (cx + 70, int(h * 0.8)), (cx + 40, int(h * 0.32)),
               (cx - 40, int(h * 0.32))], fill=(236, 196, 40))                  # raincoat
    d.rectangle([cx + 80, int(h * 0.45), cx + 110, int(h * 0.55)], fill=(255, 226, 140))   # lantern
    img.save(path)


def draw_depth(path: str, size=SIZE) -> None:
    """Inverse depth (white = near): the floor comes closer towards the bottom, the back wall is far."""
    import numpy as np
    from PIL import Image

    w, h = size
    rows = np.clip((np.arange(h) / (h - 1) - 0.4) / 0.6, 0, 1)
    values = (40 + 200 * rows)[:, None].repeat(w, 1)
    Image.fromarray(values.astype(np.uint8), mode="L").save(path)


GENERATED = {"character.png": draw_character, "set_depth.png": draw_depth}


def ensure(input_dir: str) -> list:
    """Put every sample input the shipped workflows use into `input_dir` (missing ones only). Returns the paths
    written."""
    os.makedirs(input_dir, exist_ok=True)
    written = []
    if os.path.isdir(SHIPPED_DIR):
        for name in sorted(os.listdir(SHIPPED_DIR)):
            src, dst = os.path.join(SHIPPED_DIR, name), os.path.join(input_dir, name)
            if os.path.isfile(src) and not os.path.exists(dst):
                shutil.copyfile(src, dst)
                written.append(dst)
    for name, draw in GENERATED.items():
        dst = os.path.join(input_dir, name)
        if not os.path.exists(dst):
            draw(dst)
            written.append(dst)
    return written
