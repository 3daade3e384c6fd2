"""The README's main job: workflows/optics_engine.json writes a playable MP4 whose focus moves near → far."""
import json
import os
import subprocess
import sys

import av
import numpy as np
import torch

from vibeboard_runner.registry import NodeRegistry
from vibeboard_runner.workflow import load_workflow
from vibeboard.optics.sample_scene import make_scene
from vibeboard.optics.sharpness import sharpest_frame_per_layer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WIDTH, HEIGHT, FRAMES = 320, 180, 9


def test_main_job_racks_focus_near_to_far(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "custom_nodes")]))
    proc = subprocess.run(
        [sys.executable, "-m", "vibeboard_runner", "run", os.path.join(ROOT, "workflows", "optics_engine.json"), "--json",
         "--set", f"1.width={WIDTH}", "--set", f"1.height={HEIGHT}", "--set", f"2.frames={FRAMES}",
         "--output-dir", str(tmp_path / "out")], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    videos = [f["path"] for f in result["files"] if f["filename"].endswith(".mp4")]
    assert len(videos) == 1 and os.path.getsize(videos[0]) > 0

    with av.open(videos[0]) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
    assert frames.shape == (FRAMES, HEIGHT, WIDTH, 3)

    scene = make_scene(WIDTH, HEIGHT, seed=0)  # the workflow's scene, so we know each pixel's layer
    sharpest = sharpest_frame_per_layer(torch.from_numpy(frames).float() / 255.0, scene.labels)
    near, mid, far = sharpest[3], sharpest[2], sharpest[1]
    assert near < mid < far, f"sharpest frame per layer near/mid/far = {near}/{mid}/{far}"
    assert near <= 1 and far >= FRAMES - 3


def test_workflow_twins_agree():
    """workflows/<name>.json (UI format) converts to exactly its API twin."""
    registry = NodeRegistry.default(embedded=True)
    for name in sorted(os.listdir(os.path.join(ROOT, "workflows"))):
        if not name.endswith(".api.json"):
            continue
        api = load_workflow(os.path.join(ROOT, "workflows", name), registry)
        ui = load_workflow(os.path.join(ROOT, "workflows", name.replace(".api.json", ".json")), registry)
        strip = lambda p: {k: (v["class_type"], v["inputs"]) for k, v in p.items()}  # noqa: E731
        assert strip(ui) == strip(api), name
