"""T2V / I2V / VACE / V2V / LoRA workflows run end to end through the embedded executor on tiny models."""
import pytest

from vibeboard.models import selftest, vram
from vibeboard_runner.executor import Executor
from vibeboard_runner.registry import NodeRegistry

WORKFLOWS = selftest.workflows()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("wan_selftest")
    models, inputs = str(root / "models"), str(root / "input")
    from vibeboard.common import runtime
    mp = pytest.MonkeyPatch()
    mp.setenv("VIBEBOARD_MODELS_DIR", models)
    mp.setitem(runtime._dirs, "models", models)  # restored (with the executor's setting) after the module
    selftest.prepare(models, inputs)
    # simulated 4 MB budget: the workflows' models evict each other
    vram.set_manager(vram.VramManager(budget_bytes=4 * 1024 ** 2, device="cpu"))
    ex = Executor(NodeRegistry.default(embedded=True), output_dir=str(root / "output"), input_dir=inputs,
                  temp_dir=str(root / "temp"), models_dir=models)
    yield ex
    mp.undo()
    vram.set_manager(None)


@pytest.mark.parametrize("name", list(WORKFLOWS))
def test_workflow_shapes(env, name):
    prompt, lat, img = WORKFLOWS[name]
    events = []
    result = env.execute(prompt, on_event=lambda e, d: events.append((e, d)))
    assert selftest.check(result, lat, img) == []
    progress = [d for e, d in events if e == "progress"]
    assert progress and progress[-1]["value"] == progress[-1]["max"]   # one tick per sampling step
    assert vram.manager().peak_device_bytes <= vram.manager().budget


def test_missing_model_error_names_node_input_and_path(env):
    prompt, _, _ = WORKFLOWS["t2v"]
    prompt = {k: dict(v, inputs=dict(v["inputs"])) for k, v in prompt.items()}
    prompt["1"]["inputs"]["model"] = "wan2.1_t2v_14B_bf16.safetensors"
    result = env.execute(prompt)
    assert result.status in ("error", "invalid")
    text = str(result.error)
    assert "model" in text and "wan2.1_t2v_14B_bf16.safetensors" in text


def test_lora_changes_the_result_and_interrupt_stops(env):
    base = env.execute(WORKFLOWS["t2v"][0]).outputs["9"]["vibeboard_inspect"]
    lora = env.execute(WORKFLOWS["t2v_lora"][0]).outputs["9"]["vibeboard_inspect"]
    assert base[0]["shape"] == lora[0]["shape"] and base[0]["mean"] != lora[0]["mean"]
    again = env.execute(WORKFLOWS["t2v"][0]).outputs["9"]["vibeboard_inspect"]
    assert again == base  # the LoRA was removed from the shared cached model
    prompt = {k: dict(v, inputs=dict(v["inputs"])) for k, v in WORKFLOWS["t2v"][0].items()}
    prompt["3"]["inputs"]["seed"] = 99  # new signature: the sampler runs again

    def on_event(event, data):
        if event == "progress":
            env.interrupt()
    result = env.execute(prompt, on_event=on_event)
    assert result.status == "interrupted"


def test_ti2v_keeps_the_clean_first_frame(env):
    """Wan2.2 TI2V: the first latent frame is the encoded image (timestep 0), the rest is generated."""
    import os
    import torch
    from vibeboard.wan import conditioning as C
    from vibeboard.wan import nodes as N
    wan, = N.VBWanModelLoader().load("diffusers/Wan2.2-TI2V-5B-Diffusers", "(from diffusers folder)",
                                      "(from diffusers folder)", "fp32")
    assert wan.variant == "ti2v" and wan.latent_channels == 48 and wan.scale_spatial == 16
    text, = N.VBWanTextEncode().encode(wan, "a boat on the river", "")
    image = torch.rand(1, 32, 32, 3, generator=torch.Generator().manual_seed(3))
    settings, = N.VBWanSamplerSettings().make(2, 3.0, 5.0, "euler", 1)
    lat, = N.VBWanI2V().generate(wan, text, image, 32, 32, 5, sampler=settings)
    first = C.denormalize(wan, C.first_frame_latents(wan, image, 32, 32))
    torch.testing.assert_close(lat["samples"][:, :, :1], first, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(lat["samples"][:, :, 1:], torch.zeros_like(lat["samples"][:, :, 1:]))
    assert os.path.basename(wan.sources["transformer"]) == "Wan2.2-TI2V-5B-Diffusers"


def test_a14b_two_experts_switch_at_boundary(env, tmp_path):
    """Wan2.2 A14B layout: high-noise expert for t ≥ boundary·1000, low-noise expert after."""
    import os
    import torch
    from vibeboard.models import tiny
    from vibeboard.wan import nodes as N
    folder = os.path.join(os.environ["VIBEBOARD_MODELS_DIR"], "diffusion_models")
    for i, name in enumerate(("tiny_i2v_high_noise.safetensors", "tiny_i2v_low_noise.safetensors")):
        model = tiny.build_transformer("i2v", 10 + i, image_dim=None, added_kv_proj_dim=None)
        tiny.save_comfy_transformer(model, os.path.join(folder, name))
    wan, = N.VBWanModelLoader().load("tiny_i2v_high_noise.safetensors", "wan_2.1_vae.safetensors",
                                      "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "fp32",
                                      model_2="tiny_i2v_low_noise.safetensors")
    assert wan.variant == "i2v_a14b" and wan.boundary_ratio == 0.9
    calls = []

    def spy(part):
        return lambda m, a, kw: calls.append((part, float(kw["timestep"].flatten()[0])))
    hooks = [wan.module(p).register_forward_pre_hook(spy(p), with_kwargs=True)
             for p in ("transformer", "transformer_2")]
    text, = N.VBWanTextEncode().encode(wan, "a bird over the sea", "")
    settings, = N.VBWanSamplerSettings().make(6, 3.5, 5.0, "euler", 2)
    lat, = N.VBWanI2V().generate(wan, text, torch.rand(1, 32, 32, 3), 32, 32, 5, sampler=settings)
    for h in hooks:
        h.remove()
    assert lat["samples"].shape == (1, 16, 2, 4, 4)
    parts = [p for p, _ in calls]
    assert "transformer" in parts and "transformer_2" in parts
    assert all(t >= 900 for p, t in calls if p == "transformer")
    assert all(t < 900 for p, t in calls if p == "transformer_2")
    assert parts == sorted(parts, key=lambda p: p == "transformer_2")  # high-noise first, then low-noise


def test_memory_settings_node_forces_block_swap(env):
    import torch
    from vibeboard.models.blockswap import BlockSwap
    from vibeboard.wan import nodes as N
    wan, = N.VBWanModelLoader().load("wan2.1_t2v_1.3B_bf16.safetensors", "wan_2.1_vae.safetensors",
                                      "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "fp32")
    text, = N.VBWanTextEncode().encode(wan, "a dog runs", "")
    settings, = N.VBWanSamplerSettings().make(2, 4.0, 5.0, "unipc", 5)
    ref, = N.VBWanT2V().generate(wan, text, 32, 32, 5, sampler=settings)
    wan, = N.VBWanMemory().apply(wan, "block_swap", 1, "sequential")
    out, = N.VBWanT2V().generate(wan, text, 32, 32, 5, sampler=settings)
    entry = wan.manager.models[wan.keys["transformer"]]
    assert isinstance(entry.swap, BlockSwap) and entry.swap.resident == 1
    torch.testing.assert_close(out["samples"], ref["samples"], rtol=1e-5, atol=1e-5)
    from vibeboard.models.blockswap import SequentialOffload
    from vibeboard.wan import conditioning as C
    C._TEXT_CACHE.clear()  # encoded prompts are cached: encode again to run the sequential text encoder
    text2, = N.VBWanTextEncode().encode(wan, "a dog runs", "")
    te = wan.manager.models[wan.keys["text_encoder"]]
    first = te.swap
    assert isinstance(first, SequentialOffload)
    wan.manager.offload(te.name)
    C._TEXT_CACHE.clear()
    text3, = N.VBWanTextEncode().encode(wan, "a dog runs", "")
    assert te.swap is first  # host copies reused, not rebuilt
    torch.testing.assert_close(text2["prompt_embeds"], text["prompt_embeds"], rtol=1e-5, atol=1e-5)
    assert torch.equal(text3["prompt_embeds"], text2["prompt_embeds"])
    N.VBWanMemory().apply(wan, "auto", -1, "auto")  # back to defaults for the other tests


def test_saved_wan_basics_workflow_runs_on_tiny_models(env, tmp_path):
    """workflows/wan_basics.json (UI format) with the size and steps turned down writes an MP4 through Wan Decode
    to Video MP4 (decode overlapped with the encode); its file reaches the UI, the run's file list and storage the
    way Save Video's does."""
    import os
    import av
    from vibeboard_runner.storage import LocalStorage, push_outputs
    from vibeboard_runner.workflow import load_workflow
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    prompt = load_workflow(os.path.join(root, "workflows", "wan_basics.json"), env.registry)
    assert prompt["5"]["class_type"] == "VBWanDecodeVideo"
    assert prompt["5"]["inputs"]["filename_prefix"] == "vibeboard/wan_t2v"
    prompt["4"]["inputs"].update(width=32, height=32, length=5)
    prompt["3"]["inputs"].update(steps=2)
    prompt["1"]["inputs"].update(dtype="fp32")
    result = env.execute(prompt)
    assert result.status == "success", result.error
    ui = result.outputs["5"]  # the frontend's video player reads this entry, as for Save Video
    assert ui["animated"] == [True] and ui["images"][0]["format"] == "video/mp4"
    assert ui["images"][0]["type"] == "output" and ui["images"][0]["subfolder"] == "vibeboard"
    files = result.output_files()
    assert [(f["node"], f["key"]) for f in files] == [("5", "images")]
    assert files[0]["filename"].startswith("wan_t2v") and files[0]["filename"].endswith(".mp4")
    with av.open(files[0]["path"]) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 5 and frames[0].shape == (32, 32, 3)
    pushed = push_outputs(LocalStorage(str(tmp_path / "store")), result.prompt_id, files)
    assert len(pushed) == 1 and "upload_error" not in pushed[0], pushed
    assert pushed[0]["content_type"] == "video/mp4" and pushed[0]["size"] == os.path.getsize(files[0]["path"])
