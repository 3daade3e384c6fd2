"""fal.ai nodes through the real fal-client against a loopback server replaying recorded queue responses:
submit → queue/progress → result → file on disk → IMAGE / frames, each error class, timeout, cancel, and the
cost entry of every call. Nothing leaves the machine."""
import json
import os

import numpy as np
import pytest
import torch
from managed_api_replay import FAL_KEY, ledger_rows, load_cassette, output_files, tiny_mp4, tiny_png
from PIL import Image

from vibeboard.common import runtime
from vibeboard.managed_api import generate, nodes
from vibeboard.managed_api.errors import ManagedApiError


def _flux(**kw):
    args = dict(model_id="fal-ai/flux/schnell", prompt="a lighthouse at dusk", width=64, height=48, seed=1,
                num_images=1)
    args.update(kw)
    return generate.generate_images("FalNode", **args)


def _errors(name):
    return load_cassette("fal_errors.json", name)


def test_flux_t2i_runs_the_queue_and_returns_the_downloaded_image(api_env, fal_replay):
    png = tiny_png()
    server = fal_replay(load_cassette("fal_flux_t2i.json"), {"flux_out.png": png})
    progress = []
    runtime.set_host_hooks(lambda v, t, p=None: progress.append((v, t)), lambda: False)
    images, provenance, ui = _flux()

    expected = np.asarray(Image.open(__import__("io").BytesIO(png)).convert("RGB"), dtype=np.float32) / 255
    assert images.shape == (1, 48, 64, 3)
    assert torch.allclose(images[0], torch.from_numpy(expected))
    assert output_files(api_env) == ["vibeboard/api_00001_.png", "vibeboard/api_00001_.png.vibeboard.json"]
    assert ui == {"images": [{"filename": "api_00001_.png", "subfolder": "vibeboard", "type": "output"}],
                  "files": [{"filename": "api_00001_.png.vibeboard.json", "subfolder": "vibeboard", "type": "output"}]}
    # queue protocol as the SDK speaks it: POST submit, GET status?logs=true until COMPLETED, GET result
    submit = server.calls("POST", "/fal-ai/flux/schnell")[0]
    assert json.loads(submit["body"])["image_size"] == {"width": 64, "height": 48}
    assert submit["headers"]["authorization"] == f"Key {FAL_KEY}"
    assert server.calls("GET", "/status")[0]["query"] == "logs=true"
    assert len(server.calls("GET", "/requests/4f1c2a9e-flux-0001")) >= 5
    # progress: monotone, the "50%" log line lands mid-way, ends at 100
    values = [v for v, _ in progress]
    assert values == sorted(values) and values[-1] == 100 and 55 in values
    # provenance and the ledger
    assert provenance["request_id"] == "4f1c2a9e-flux-0001" and provenance["seed"] == 1234
    assert provenance["logs"][-1].startswith("100%")
    side = json.load(open(api_env / "output" / "vibeboard" / "api_00001_.png.vibeboard.json"))
    assert side["model"] == "fal-ai/flux/schnell" and side["cost_usd"] == pytest.approx(0.003)
    (row,) = ledger_rows(api_env)
    assert (row["status"], row["unit"], row["quantity"], row["cost_usd"]) == ("ok", "megapixel", 1, 0.003)
    assert row["request_id"] == "4f1c2a9e-flux-0001" and row["kind"] == "image"
    assert FAL_KEY not in json.dumps(provenance) and FAL_KEY not in json.dumps(row)


def test_kling_i2v_uploads_the_start_frame_and_decodes_the_clip(api_env, fal_replay, tmp_path):
    clip = tiny_mp4(tmp_path / "clip.mp4")
    server = fal_replay(load_cassette("fal_kling_i2v.json"), {"output.mp4": clip})
    start = torch.rand(1, 24, 32, 3, generator=torch.Generator().manual_seed(3))
    frames, audio, fps, path, provenance, ui = generate.generate_clip(
        "VideoNode", model_id="fal-ai/kling-video/v2.5-turbo/pro/image-to-video", prompt="waves roll in",
        duration_s=5, aspect_ratio="16:9", image=start)

    upload = server.calls("POST", "/files/upload")[0]
    assert upload["headers"]["authorization"] == "Bearer cdn-token-123"
    assert upload["headers"]["content-type"] == "image/png"
    uploaded = np.asarray(Image.open(__import__("io").BytesIO(upload["body"])))
    assert uploaded.shape == (24, 32, 3)
    assert np.abs(uploaded / 255.0 - start[0].numpy()).max() < 1 / 255 + 1e-6
    body = json.loads(server.calls("POST", "/image-to-video")[0]["body"])
    assert body == {"prompt": "waves roll in", "duration": "5", "aspect_ratio": "16:9",
                    "image_url": f"{server.base}/files/uploads/input.png"}
    assert frames.shape == (8, 24, 32, 3) and fps == pytest.approx(8.0)
    assert audio["sample_rate"] == 16000 and audio["waveform"].shape[-1] > 0
    assert os.path.getsize(path) == len(clip) and ui["images"][0]["format"] == "video/mp4"
    assert ui["animated"] == [True] and ui["files"][0]["filename"].endswith(".mp4.vibeboard.json")
    (row,) = ledger_rows(api_env)
    assert row["kind"] == "clip" and row["status"] == "ok" and row["cost_usd"] == pytest.approx(0.35)
    assert provenance["frames"] == 8 and provenance["uploaded_image_sha256"]


@pytest.mark.parametrize("name, kind, input_name, words", [
    ("submit_401", "auth", "api_key_env", ["401", "Invalid API key", "$FAL_KEY"]),
    ("submit_403", "auth", "api_key_env", ["403", "does not have access"]),
    ("submit_402", "quota", "model", ["402", "Exhausted balance"]),
    ("result_422", "input", "width", ["422", "image_size: width must be a multiple of 8"]),
    ("queue_error", "queue", "prompt", ["Runner crashed: CUDA error", "runner_error"]),
    ("queue_failed_status", "queue", "model", ["FAILED"]),
])
def test_provider_errors_name_the_node_the_input_and_the_provider_message(api_env, fal_replay, name, kind,
                                                                          input_name, words):
    fal_replay(_errors(name))
    with pytest.raises(ManagedApiError) as info:
        _flux()
    err = info.value
    assert (err.kind, err.input_name) == (kind, input_name)
    assert str(err).startswith(f"FalNode: input '{input_name}': ")
    for word in words:
        assert word in str(err)
    assert not err.retryable
    assert output_files(api_env) == []
    assert [r["status"] for r in ledger_rows(api_env)] == ["failed"]


def test_rate_limit_is_retried_with_backoff_then_surfaced(api_env, fal_replay, monkeypatch):
    import fal_client.client as fc
    monkeypatch.setattr(fc, "MAX_ATTEMPTS", 3)
    monkeypatch.setattr(fc, "BASE_DELAY", 0.01)
    server = fal_replay(_errors("submit_429_always"))
    with pytest.raises(ManagedApiError) as info:
        _flux()
    assert info.value.kind == "rate" and info.value.retryable
    assert "Rate limit exceeded" in str(info.value)
    assert len(server.calls("POST")) == 3  # the SDK retried 429 (with backoff) before giving up


def test_server_error_on_submit_is_not_resent(api_env, fal_replay):
    server = fal_replay(_errors("submit_500"))
    with pytest.raises(ManagedApiError) as info:
        _flux()
    assert info.value.kind == "server" and "Internal server error" in str(info.value)
    assert len(server.calls("POST")) == 1  # a second submit could be billed twice


def test_status_5xx_is_retried_because_polling_is_idempotent(api_env, fal_replay):
    server = fal_replay(_errors("status_503_then_ok"), {"flux_out.png": tiny_png()})
    images, provenance, _ = _flux()
    assert images.shape[0] == 1 and provenance["seed"] == 7
    assert len(server.calls("POST")) == 1 and len(server.calls("GET", "/r503/status")) >= 3


def test_timeout_cancels_the_remote_request_and_writes_nothing(api_env, fal_replay):
    server = fal_replay(_errors("stuck_in_progress"))
    with pytest.raises(ManagedApiError) as info:
        _flux(timeout_s=0.3)
    assert info.value.kind == "timeout" and info.value.input_name == "timeout_s"
    assert "cancelled" in str(info.value)
    assert len(server.calls("PUT", "/rslow/cancel")) == 1
    assert output_files(api_env) == []
    assert ledger_rows(api_env)[0]["status"] == "timeout" and ledger_rows(api_env)[0]["cost_usd"] == 0


def test_interrupting_the_job_cancels_the_remote_request(api_env, fal_replay):
    server = fal_replay(_errors("stuck_in_progress"))
    polls = lambda: len(server.calls("GET", "/status"))  # noqa: E731
    runtime.set_host_hooks(None, lambda: polls() >= 3)
    with pytest.raises(runtime.InterruptProcessing):
        _flux()
    assert len(server.calls("PUT", "/rslow/cancel")) == 1
    (row,) = ledger_rows(api_env)
    assert row["status"] == "cancelled" and "remote cancel sent" in row["note"]
    assert output_files(api_env) == []


def test_a_cut_download_leaves_no_file_and_the_paid_result_is_fetched_on_the_next_run(api_env, fal_replay):
    png = tiny_png()
    cut = [dict(i) for i in load_cassette("fal_flux_t2i.json")]
    cut.insert(0, {"method": "GET", "path": "/files/b/flux_out.png", "file": "flux_out.png", "truncate_to": 50})
    server = fal_replay(cut, {"flux_out.png": png})
    with pytest.raises(ManagedApiError) as info:
        _flux()
    assert info.value.kind == "download" and "run again to fetch it without paying twice" in str(info.value)
    assert output_files(api_env) == []  # no partial, no empty placeholder
    (row,) = ledger_rows(api_env)
    assert row["status"] == "download_failed" and row["cost_usd"] is None and row["result"]

    images, provenance, _ = _flux()  # same request again: downloads the stored result, no new submit
    assert provenance["recovered_download"] and images.shape == (1, 48, 64, 3)
    assert len(server.calls("POST")) == 1
    (row,) = ledger_rows(api_env)
    assert row["status"] == "ok" and row["cost_usd"] == pytest.approx(0.003)


def test_second_image_failing_keeps_the_first_and_says_where(api_env, fal_replay):
    items = [dict(i) for i in load_cassette("fal_flux_t2i.json")]
    items[-1] = dict(items[-1], json={"images": [{"url": "{base}/files/b/one.png", "content_type": "image/png"},
                                                 {"url": "{base}/files/b/missing.png", "content_type": "image/png"}]})
    fal_replay(items, {"one.png": tiny_png()})
    with pytest.raises(ManagedApiError) as info:
        _flux(num_images=2)
    assert "already saved:" in str(info.value) and "api_00001_.png" in str(info.value)
    assert output_files(api_env) == ["vibeboard/api_00001_.png"]


def test_the_key_is_never_echoed_in_an_error(api_env, fal_replay):
    fal_replay([{"method": "POST", "path": "/fal-ai/flux/schnell", "status": 401,
                 "json": {"detail": f"Key {FAL_KEY} is not valid"}}])
    with pytest.raises(ManagedApiError) as info:
        _flux()
    assert FAL_KEY not in str(info.value) and "***" in str(info.value)


@pytest.mark.parametrize("node_class, kwargs", [
    (nodes.VBFalImage, dict(model="fal-ai/flux/schnell", prompt="x", width=64, height=64, seed=0, num_images=1)),
    (nodes.VBFalVideo, dict(model="fal-ai/veo3", prompt="x", duration_s=8, aspect_ratio="16:9",
                            resolution="default", generate_audio=True, negative_prompt="", seed=0)),
])
def test_nodes_without_their_key_name_the_env_var_and_send_nothing(api_env, fal_replay, monkeypatch, node_class,
                                                                   kwargs):
    server = fal_replay([])
    monkeypatch.delenv("FAL_KEY")
    with pytest.raises(ManagedApiError) as info:
        getattr(node_class(), node_class.FUNCTION)(**kwargs)
    assert "input 'api_key_env'" in str(info.value) and "$FAL_KEY is not set" in str(info.value)
    assert str(info.value).startswith(nodes.NODE_DISPLAY_NAME_MAPPINGS[node_class.__name__])
    assert server.requests == []


def test_a_key_typed_into_the_env_field_is_refused_not_used(api_env, fal_replay):
    server = fal_replay([])
    with pytest.raises(ManagedApiError) as info:
        nodes.VBFalImage().generate("fal-ai/flux/schnell", "x", 64, 64, 0, 1, api_key_env="sk-live:abc/123")
    assert "NAME of the variable" in str(info.value) and server.requests == []


def test_custom_model_id_and_extra_arguments_reach_the_provider(api_env, fal_replay):
    items = [dict(i) for i in load_cassette("fal_flux_t2i.json")]
    items[0] = dict(items[0], path="/fal-ai/flux-2-pro")
    server = fal_replay(items, {"flux_out.png": tiny_png()})
    out = nodes.VBFalImage().generate("custom", "a lighthouse", 64, 48, 5, 1, custom_model_id="fal-ai/flux-2-pro",
                                      extra_arguments='{"safety_tolerance": "5"}')
    body = json.loads(server.calls("POST")[0]["body"])
    assert body["safety_tolerance"] == "5" and body["seed"] == 5
    assert out["result"][2] == 0.0  # no price for a model the table does not know...
    (row,) = ledger_rows(api_env)
    assert row["cost_usd"] is None and "no price" in row["note"]  # ...and the ledger says so


def test_bad_extra_arguments_and_model_ids_are_input_errors(api_env):
    with pytest.raises(runtime.NodeInputError, match="input 'extra_arguments': not valid JSON"):
        nodes.VBFalImage().generate("fal-ai/flux/schnell", "x", 64, 64, 0, 1, extra_arguments="{oops")
    with pytest.raises(runtime.NodeInputError, match="input 'custom_model_id'"):
        nodes.VBFalImage().generate("custom", "x", 64, 64, 0, 1)
    with pytest.raises(runtime.NodeInputError, match="input 'custom_model_id'"):
        nodes.VBFalImage().generate("custom", "x", 64, 64, 0, 1, custom_model_id="https://evil/x")


def test_result_links_must_be_https_unless_the_endpoints_were_redirected(api_env):
    from vibeboard.managed_api import downloads
    with pytest.raises(ManagedApiError, match="only https"):
        downloads.download("FalNode", "http://169.254.169.254/latest/meta-data", "vibeboard/x")
    with pytest.raises(ManagedApiError, match="only https"):
        downloads.download("FalNode", "file:///etc/passwd", "vibeboard/x", allow_http=True)
    path = downloads.download("FalNode", "data:image/png;base64," + __import__("base64").b64encode(
        tiny_png()).decode(), "vibeboard/x")
    assert path.endswith(".png") and open(path, "rb").read() == tiny_png()
    assert output_files(api_env) == ["vibeboard/x_00001_.png"]  # the refused ones left no placeholder


def test_a_missing_sdk_names_the_extra(api_env, monkeypatch):
    import sys
    from vibeboard.managed_api import fal_backend
    monkeypatch.setitem(sys.modules, "fal_client.client", None)
    with pytest.raises(ManagedApiError, match=r"pip install 'vibeboard\[api\]'"):
        fal_backend.sdk("FalNode")


def test_the_docs_list_every_priced_model_with_its_date():
    from vibeboard.managed_api import costs
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    doc = open(os.path.join(root, "docs", "apis.md")).read()
    for model, entry in costs.load_prices()["models"].items():
        line = next((l for l in doc.splitlines() if l.startswith(f"| `{model}` |")), None)
        assert line is not None, f"docs/apis.md lacks {model}"
        assert entry["checked"] in line


def test_an_image_wired_to_a_text_model_is_an_error_not_silently_dropped(api_env):
    image = torch.rand(1, 16, 16, 3)
    with pytest.raises(runtime.NodeInputError, match="input 'image': fal-ai/flux/schnell is text-to-image"):
        _flux(image=image)
    with pytest.raises(runtime.NodeInputError, match="input 'image': .* animates an image"):
        generate.generate_clip("V", model_id="fal-ai/veo3/image-to-video", prompt="x", duration_s=8,
                               aspect_ratio="16:9")
    from vibeboard.managed_api import catalog
    custom = catalog.endpoint("someone/new-video-model", video=True, has_image=True)
    assert (custom.mode, custom.image_arg) == ("i2v", "image_url")  # an unknown id: trust the wiring


def test_input_video_frames_are_uploaded_as_an_mp4(api_env, fal_replay, tmp_path):
    import av
    clip = tiny_mp4(tmp_path / "clip.mp4")
    items = [dict(i) for i in load_cassette("fal_kling_i2v.json")]
    items[2] = dict(items[2], path="/fal-ai/luma-dream-machine/ray-2/modify")  # the submit: a v2v endpoint
    server = fal_replay(items, {"output.mp4": clip})
    source = torch.rand(6, 32, 48, 3, generator=torch.Generator().manual_seed(5))
    out = nodes.VBFalVideo().generate("custom", "make it night", 5, "16:9", "default", False, "", 0,
                                      custom_model_id="fal-ai/luma-dream-machine/ray-2/modify",
                                      input_video=source, input_video_fps=12.0)
    upload = server.calls("POST", "/files/upload")[0]
    assert upload["headers"]["content-type"] == "video/mp4"
    (tmp_path / "up.mp4").write_bytes(upload["body"])
    with av.open(str(tmp_path / "up.mp4")) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height, stream.frames, float(stream.average_rate)) == (48, 32, 6, 12.0)
    body = json.loads(server.calls("POST", "/ray-2/modify")[0]["body"])
    assert body["video_url"] == f"{server.base}/files/uploads/input.png" and "image_url" not in body
    assert body["duration"] == "5s"  # Luma's format, guessed from the custom id
    assert json.loads(out["result"][4])["uploaded_video_sha256"]


def test_without_the_api_extra_the_pack_loads_and_the_nodes_name_the_extra(tmp_path):
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = (
        "import sys, torch\n"
        "for m in ('pydantic', 'openai', 'fal_client', 'fal_client.client'): sys.modules[m] = None\n"
        f"sys.path[:0] = [{os.path.join(root, 'custom_nodes')!r}]\n"
        "import vibeboard\n"
        "from vibeboard.common import runtime\n"
        f"runtime.set_host_dirs(output={str(tmp_path / 'o')!r}, input={str(tmp_path / 'i')!r})\n"
        "assert 'managed_api' not in vibeboard.IMPORT_ERRORS, vibeboard.IMPORT_ERRORS\n"
        "from vibeboard.managed_api import nodes\n"
        "for call in (lambda: nodes.VBGrokVision().analyse(torch.rand(1, 8, 8, 3), 'a', 'grok-4', 1, ''),\n"
        "             lambda: nodes.VBFalImage().generate('fal-ai/flux/schnell', 'x', 64, 64, 0, 1)):\n"
        "    try:\n"
        "        call()\n"
        "    except Exception as exc:\n"
        "        print(exc)\n")
    env = dict(os.environ, FAL_KEY="k", XAI_API_KEY="k")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 2 and all("pip install 'vibeboard[api]'" in line for line in lines), out.stdout


def test_record_mode_captures_a_session_that_then_replays_offline(api_env, monkeypatch, tmp_path):
    """Record mode against stand-in upstreams (the queue and a separate media host), then replay the recording:
    what a developer with a key does to refresh the cassettes against the real fal.ai."""
    from managed_api_replay import ReplayServer, load_recording
    png = tiny_png(seed=4)
    with ReplayServer([], {"flux_out.png": png}) as media:
        text = json.dumps(load_cassette("fal_flux_t2i.json")).replace("{base}/files/", media.base + "/files/")
        cassette = json.loads(text)
        with ReplayServer(cassette) as queue, ReplayServer(record_upstreams={"/fal-ai/": queue.base}) as recorder:
            for env in ("VIBEBOARD_FAL_QUEUE_URL", "VIBEBOARD_FAL_REST_URL", "VIBEBOARD_FAL_CDN_URL"):
                monkeypatch.setenv(env, recorder.base)
            first, _, _ = _flux()
            recorder.save(str(tmp_path / "rec.json"), "recorded by the test")
    recorded = json.load(open(tmp_path / "rec.json"))["interactions"]
    assert recorded[0]["method"] == "POST" and recorded[0]["json"]["status_url"].startswith("{base}/fal-ai/")
    assert recorded[-1]["path"].startswith("/_remote/127.0.0.1:") and recorded[-1]["file"]

    interactions, files = load_recording(str(tmp_path / "rec.json"))
    with ReplayServer(interactions, files) as replay:
        for env in ("VIBEBOARD_FAL_QUEUE_URL", "VIBEBOARD_FAL_REST_URL", "VIBEBOARD_FAL_CDN_URL"):
            monkeypatch.setenv(env, replay.base)
        second, _, _ = _flux(seed=1)
    assert torch.equal(first, second)


def test_base_urls_go_back_to_fal_when_the_overrides_are_unset(api_env, monkeypatch):
    from vibeboard.managed_api import fal_backend
    monkeypatch.setenv("VIBEBOARD_FAL_QUEUE_URL", "http://127.0.0.1:9/")
    assert fal_backend.sdk("FalNode").QUEUE_URL_FORMAT == "http://127.0.0.1:9/"
    monkeypatch.delenv("VIBEBOARD_FAL_QUEUE_URL")
    fc = fal_backend.sdk("FalNode")
    assert fc.QUEUE_URL_FORMAT.startswith("https://queue.") and fc.REST_URL.startswith("https://")
    assert not fal_backend.endpoints_overridden()
