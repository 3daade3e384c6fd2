"""comfy-api-simplified (a popular third-party ComfyUI client) drives `vibeboard serve` unchanged: queue the Optics
Engine workflow and wait over the websocket, download the PNG and the MP4, upload an image and use it, and a
failing job raises (the client trusts the end-of-job message order: execution_error before the final status)."""
import io
import json
import os

import pytest
from PIL import Image

from service_helpers import make_server
from service_nodes import workflow

client = pytest.importorskip("comfy_api_simplified", reason="dev dependency comfy-api-simplified not installed")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def api(tmp_path):
    server = make_server(tmp_path)
    yield client.ComfyApiWrapper(server.url)
    server.stop_thread()


def test_optics_engine_png_and_mp4(api):
    wf = client.ComfyWorkflowWrapper(os.path.join(ROOT, "workflows", "optics_engine.api.json"))
    wf.set_node_param("Sample RGB-D scene", "width", 96)
    wf.set_node_param("Sample RGB-D scene", "height", 64)
    wf.set_node_param("Rack focus near → far", "frames", 3)
    images = api.queue_and_wait_images(wf, "Save bokeh still")
    (name, data), = images.items()
    assert name.startswith("bokeh_") and Image.open(io.BytesIO(data)).size == (96, 64)
    queue = api.get_queue()
    assert queue["queue_running"] == [] and queue["queue_pending"] == []


def test_mp4_download_and_history(api):
    wf = client.ComfyWorkflowWrapper(os.path.join(ROOT, "workflows", "optics_engine.api.json"))
    wf.set_node_param("Sample RGB-D scene", "width", 64)
    wf.set_node_param("Sample RGB-D scene", "height", 48)
    wf.set_node_param("Rack focus near → far", "frames", 3)
    import asyncio
    prompt_id, _ = asyncio.run(api.queue_prompt_and_wait(wf))
    outputs = api.get_history(prompt_id)[prompt_id]["outputs"]
    video = outputs[wf.get_node_id("Save rack focus MP4")]["images"][0]
    data = api.get_image(video["filename"], video["subfolder"], video["type"])
    assert video["filename"].endswith(".mp4") and data[4:8] == b"ftyp"


def test_upload_then_load(api, tmp_path):
    path = tmp_path / "plate.png"
    Image.new("RGB", (5, 4), (1, 2, 3)).save(path)
    uploaded = api.upload_image(str(path), subfolder="plates")
    assert uploaded == {"name": "plate.png", "subfolder": "plates", "type": "input"}
    prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": "plates/plate.png"},
                    "_meta": {"title": "Load"}},
              "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "up"},
                    "_meta": {"title": "Save"}}}
    (data,) = api.queue_and_wait_images(prompt, "Save").values()
    assert Image.open(io.BytesIO(data)).getpixel((0, 0)) == (1, 2, 3)


def test_failing_job_raises(api):
    import asyncio
    # the client opens its websocket only after queuing; a job that fails before that is over before it listens
    # (as with ComfyUI), so the failing node runs after a short slow node
    with pytest.raises(client.exceptions.ComfyApiError, match="Execution error"):
        asyncio.run(api.queue_prompt_and_wait(workflow(fail=True, seconds=0.5)))
    with pytest.raises(client.exceptions.ComfyApiError, match="400"):
        api.queue_prompt({"1": {"class_type": "NoSuchNode", "inputs": {}}})
    assert json.dumps(api.get_system_stats()["system"]["comfyui_version"]).startswith('"vibeboard-')
