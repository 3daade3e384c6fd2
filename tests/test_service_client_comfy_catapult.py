"""comfy-catapult (a third-party ComfyUI scheduling client) drives `vibeboard serve` unchanged: queue the Optics
Engine workflow, wait, download the PNG and the MP4, upload an image and use it, and a failing job raises.

comfy-catapult pins websockets/attrs versions that break fal-client and elevenlabs, so it lives in its own venv
(.ci/run: `python3 -m venv /tmp/catapult-venv && /tmp/catapult-venv/bin/pip install comfy-catapult`) and this test
runs tests/catapult_client.py in that interpreter, named by VIBEBOARD_CATAPULT_PY. Never install it next to the pack.
"""
import json
import os
import subprocess

import pytest
from PIL import Image

from service_helpers import make_server
from service_nodes import workflow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CATAPULT_PY = os.environ.get("VIBEBOARD_CATAPULT_PY")

pytestmark = pytest.mark.skipif(
    not (CATAPULT_PY and os.access(CATAPULT_PY, os.X_OK)),
    reason="comfy-catapult lives in its own venv: set VIBEBOARD_CATAPULT_PY to its python "
           "(.ci/run makes /tmp/catapult-venv)")


def test_catapult_queues_downloads_uploads_and_sees_failures(tmp_path):
    optics = json.load(open(os.path.join(ROOT, "workflows", "optics_engine.api.json"), encoding="utf-8"))
    for node in optics.values():  # small: 2 CPU cores
        inputs = node["inputs"]
        if node["class_type"] == "VBSampleRGBDScene":
            inputs.update(width=96, height=64)
        if node["class_type"] == "VBRackFocus":
            inputs["frames"] = 3
    job = tmp_path / "job"
    job.mkdir()
    (job / "optics.json").write_text(json.dumps(optics))
    (job / "failing.json").write_text(json.dumps(workflow(fail=True, seconds=0.3)))
    Image.new("RGB", (5, 4), (9, 8, 7)).save(job / "upload.png")

    server = make_server(tmp_path / "server")
    try:
        proc = subprocess.run([CATAPULT_PY, os.path.join(ROOT, "tests", "catapult_client.py"), server.url, str(job)],
                              capture_output=True, text=True, timeout=240)
    finally:
        server.stop_thread()
    assert proc.returncode == 0, proc.stderr[-4000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])

    assert seen["version"].startswith("vibeboard-")
    downloads = seen["downloads"]
    png = next(p for n, p in downloads.items() if n.startswith("bokeh_") and n.endswith(".png"))
    mp4 = next(p for n, p in downloads.items() if n.endswith(".mp4"))
    assert Image.open(png).size == (96, 64)
    assert open(mp4, "rb").read(12)[4:8] == b"ftyp"
    assert "/input/plates/upload.png" in seen["uploaded"]
    assert Image.open(seen["roundtrip"]).getpixel((0, 0)) == (9, 8, 7)
    assert seen["failing"].startswith("JobFailed"), seen["failing"]
    assert seen["refused"].startswith("WorkflowSubmissionError"), seen["refused"]
