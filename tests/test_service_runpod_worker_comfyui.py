"""RunPod handler with worker-comfyui's request shape: named images (base64, data URI, URL) written to the input
folder, a named-but-missing input refused, outputs inline as base64 (videos too) or as storage URLs."""
import base64
import io
import os
import stat

from PIL import Image

from service_nodes import workflow


def png_bytes(colour=(10, 200, 30), size=(4, 3)):
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def load_and_save(name, node="1"):
    return {node: {"class_type": "LoadImage", "inputs": {"image": name}},
            str(int(node) + 1): {"class_type": "SaveImage", "inputs": {"images": [node, 0], "filename_prefix": "wc"}}}


def test_worker_comfyui_images_base64_in_and_out(handler_env, tmp_path):
    data_uri = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
    out = handler_env.handler({"id": "wc-1", "input": {"workflow": load_and_save("plate.png"),
                                                       "images": [{"name": "plate.png", "image": data_uri}],
                                                       "output": {"base64": True}}})
    assert out.get("status") == "success", out
    written = tmp_path / "input" / "plate.png"
    assert stat.S_IMODE(os.stat(written).st_mode) == 0o644
    (image,) = out["images"]
    assert image["type"] == "base64" and image["content_type"] == "image/png" and image["filename"].endswith(".png")
    decoded = Image.open(io.BytesIO(base64.b64decode(image["data"])))
    assert decoded.size == (4, 3) and decoded.getpixel((0, 0)) == (10, 200, 30)
    assert out["outputs"] == []  # base64 mode: nothing pushed unless output.upload says so


def test_worker_comfyui_image_by_url_and_url_outputs(handler_env, tmp_path, monkeypatch):
    monkeypatch.setenv("VIBEBOARD_ALLOW_PRIVATE_URLS", "1")  # the test server is on loopback
    handler_env._state.clear()
    body = png_bytes((200, 10, 10))

    from vibeboard.common.replay_server import ReplayServer
    with ReplayServer(files={"x.png": body}) as server:  # GET /files/x.png
        out = handler_env.handler({"id": "wc-2", "input": {
            "workflow": load_and_save("sub/remote.png"),
            "images": [{"name": "sub/remote.png", "image": server.base + "/files/x.png"}]}})
    assert out.get("status") == "success", out
    assert (tmp_path / "input" / "sub" / "remote.png").read_bytes() == body
    (image,) = out["images"]
    assert image["type"] == "s3_url" and image["data"] == out["outputs"][0]["url"]


def test_named_input_missing_is_an_error_not_a_dropped_branch(handler_env, tmp_path):
    data = base64.b64encode(png_bytes()).decode()
    graph = {**load_and_save("given.png", "1"), **load_and_save("forgotten.png", "3")}
    out = handler_env.handler({"id": "wc-3", "input": {"workflow": graph,
                                                       "images": [{"name": "given.png", "image": data}]}})
    assert "error" in out and "status" not in out, out
    assert "node 3 (LoadImage)" in out["error"] and "forgotten.png" in out["error"]
    assert not (tmp_path / "output").exists() or not any((tmp_path / "output").rglob("*.png"))


def test_bad_image_entries_are_refused(handler_env, tmp_path):
    good = base64.b64encode(png_bytes()).decode()
    for images, words in (([{"name": "../escape.png", "image": good}], ".."),
                          ([{"name": "/etc/x.png", "image": good}], "relative"),
                          ([{"name": "a.png", "image": "not base64!"}], "base64"),
                          ([{"image": good}], "images[0]"),
                          ({"name": "a.png"}, "list")):
        out = handler_env.handler({"id": "wc-4", "input": {"workflow": load_and_save("a.png"), "images": images}})
        assert words in out.get("error", ""), (images, out)
    assert not (tmp_path / "escape.png").exists()


def test_video_output_inline_as_base64(handler_env):
    out = handler_env.handler({"id": "wc-5", "input": {"workflow": workflow(seconds=0.05, kind="mp4"),
                                                       "output": {"base64": True}}})
    assert out.get("status") == "success", out
    (video,) = [i for i in out["images"] if i["content_type"] == "video/mp4"]
    assert base64.b64decode(video["data"])[4:8] == b"ftyp"
