"""T2V / I2V / VACE / V2V / LoRA workflows run end to end through the embedded executor on tiny models."""
import pytest

from vibeboard.models import selftest, vram
from runner.executor import Executor
from runner.registry import NodeRegistry

WORKFLOWS = selftest.workflows()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("wan_selftest")
    models, inputs = str(root / "models"), str(root / "input")
    mp = pytest.MonkeyPatch()
    mp.setenv("VIBEBOARD_MODELS_DIR", models)
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
