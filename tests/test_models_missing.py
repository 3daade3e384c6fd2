"""Missing weights, one clear message: a workflow with several missing files reports all of them at once (node,
input, expected path, `vibeboard models pull` command), LoRAs included, before any node runs; and ComfyUI's
Unload Models / POST /free releases VibeBoard's models."""
import sys
import types

import pytest
import torch

from vibeboard_runner.executor import Executor
from vibeboard_runner.registry import NodeRegistry
from vibeboard_runner.validation import validate_prompt
from vibeboard.common import runtime
from vibeboard.models import preflight, release, vram

WORKFLOW = {
    "1": {"class_type": "VBWanModelLoader", "inputs": {
        "model": "wan2.1_t2v_1.3B_bf16.safetensors", "vae": "wan_2.1_vae.safetensors",
        "text_encoder": "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "dtype": "bf16"}},
    "2": {"class_type": "VBWanLoRA", "inputs": {
        "wan": ["1", 0], "lora_name": "StoryMem/Wan2.2-MI2V-A14B/backbone_high_noise.safetensors", "strength": 1.0}},
    "3": {"class_type": "VBWanTextEncode", "inputs": {"wan": ["2", 0], "prompt": "a cat", "negative_prompt": ""}},
    "4": {"class_type": "VBWanT2V", "inputs": {"wan": ["2", 0], "text": ["3", 0], "width": 64, "height": 64,
                                               "length": 5}},
    "5": {"class_type": "VBWanVAEDecode", "inputs": {"wan": ["2", 0], "latent": ["4", 0]}},
    "6": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": "x"}},
    "7": {"class_type": "VBGenFocusLoader", "inputs": {"flux_folder": "diffusers/FLUX.1-dev",
                                                       "deblur_lora": "Genfocus/deblurNet.safetensors",
                                                       "bokeh_lora": "", "dtype": "bf16", "device": "cpu"}},
}


@pytest.fixture()
def empty_models(tmp_path, monkeypatch):
    monkeypatch.delenv("VIBEBOARD_COMFYUI_DIR", raising=False)
    monkeypatch.setitem(runtime._dirs, "models", str(tmp_path / "models"))
    return tmp_path / "models"


def test_all_missing_files_listed_with_path_and_pull_command(empty_models):
    items = preflight.missing(WORKFLOW)
    found = {(i["node"], i["input"]): i for i in items}
    assert set(found) == {("1", "model"), ("1", "vae"), ("1", "text_encoder"), ("2", "lora_name"),
                          ("7", "flux_folder"), ("7", "deblur_lora")}
    lora = found[("2", "lora_name")]
    assert lora["expected"] == str(empty_models / "loras" / "StoryMem" / "Wan2.2-MI2V-A14B" /
                                   "backbone_high_noise.safetensors")
    assert lora["pull"] == "vibeboard models pull storymem-lora"
    assert found[("7", "deblur_lora")]["pull"] == "vibeboard models pull genfocus-loras"
    assert found[("1", "model")]["pull"] == "vibeboard models pull wan2.1-t2v-1.3b"
    # only what the outputs need: the GenFocus loader feeds no output here
    assert {i["node"] for i in preflight.missing(WORKFLOW, ["6"])} == {"1", "2"}


def test_a_run_stops_before_the_first_node_and_names_every_file(empty_models, tmp_path):
    ex = Executor(NodeRegistry.default(), output_dir=tmp_path / "o", input_dir=tmp_path / "i", temp_dir=tmp_path / "t",
                  models_dir=str(empty_models))
    prompt = {k: v for k, v in WORKFLOW.items() if k != "7"}
    res = ex.execute(prompt)
    assert res.status == "invalid" and not res.outputs
    text = res.validation_summary
    assert text.startswith("4 model files missing")
    for needle in ("node 1 VBWanModelLoader: input 'model'", "node 2 VBWanLoRA: input 'lora_name'",
                   "vibeboard models pull storymem-lora", "vibeboard models pull umt5-xxl",
                   str(empty_models / "vae" / "wan_2.1_vae.safetensors")):
        assert needle in text, needle
    assert set(res.node_errors) == {"1", "2"} and res.node_errors["2"]["errors"][0]["type"] == "model_missing"
    assert not [m for m in res.messages if m[0] == "executed"]


def test_missing_lora_validates_with_a_clear_message_not_value_not_in_list(empty_models):
    registry = NodeRegistry.default()
    ok = validate_prompt({k: dict(v, inputs=dict(v["inputs"])) for k, v in WORKFLOW.items() if k != "7"}, registry)
    assert ok.ok  # a published LoRA not pulled yet: valid graph, the run's preflight says how to get it
    bad = {k: dict(v, inputs=dict(v["inputs"])) for k, v in WORKFLOW.items() if k != "7"}
    bad["2"]["inputs"]["lora_name"] = "my_style.safetensors"
    result = validate_prompt(bad, registry)
    text = result.summary()
    assert not result.ok and "not in list" not in text.lower()
    assert "my_style.safetensors' not found; expected at " + str(empty_models / "loras" / "my_style.safetensors") in text


def test_a_loader_inside_comfyui_reports_the_whole_workflow(empty_models):
    from vibeboard.optics_learned.nodes import VBGenFocusLoader
    with pytest.raises(preflight.MissingModelsError) as info:
        VBGenFocusLoader().load("diffusers/FLUX.1-dev", "Genfocus/deblurNet.safetensors", "", "bf16", "cpu",
                                prompt=WORKFLOW)
    err = info.value
    assert err.items[0]["node"] == "7" and err.items[0]["input"] == "flux_folder"
    assert {(i["node"], i["input"]) for i in err.items} >= {("1", "model"), ("2", "lora_name"), ("7", "deblur_lora")}
    assert "6 model files missing" in str(err) and "vibeboard models pull flux1-dev" in str(err)


def test_comfyui_unload_models_releases_vibeboard_models(monkeypatch):
    calls = []
    fake = types.SimpleNamespace(unload_all_models=lambda: calls.append("comfy"))
    monkeypatch.setitem(sys.modules, "comfy.model_management", fake)
    manager = vram.VramManager(budget_bytes=1 << 30, device=torch.device("cpu"))
    monkeypatch.setattr(vram, "_DEFAULT", manager)
    manager.register("tiny", torch.nn.Linear(4, 4))
    from vibeboard.optics import depth_estimation
    depth_estimation._cache["x"] = object()
    assert release.hook_comfy() and release.hook_comfy()  # idempotent
    fake.unload_all_models()  # what ComfyUI's POST /free {"unload_models": true} calls
    assert calls == ["comfy"] and manager.models == {} and depth_estimation._cache == {}
    assert getattr(fake.unload_all_models, release.HOOK_FLAG)


def test_no_comfy_no_hook(monkeypatch):
    monkeypatch.delitem(sys.modules, "comfy.model_management", raising=False)
    assert release.hook_comfy() is False and "comfy.model_management" not in sys.modules


def test_wan_loader_inside_comfyui_reports_the_whole_workflow(empty_models):
    from vibeboard.wan.nodes import VBWanModelLoader
    with pytest.raises(preflight.MissingModelsError) as info:
        VBWanModelLoader().load("wan2.1_t2v_1.3B_bf16.safetensors", "wan_2.1_vae.safetensors",
                                "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "bf16", prompt=WORKFLOW)
    first = info.value.items[0]
    assert (first["node"], first["input"], first["title"]) == ("1", "model", "Wan Model Loader (VibeBoard)")
    assert len(info.value.items) == 6 and "vibeboard models pull genfocus-loras" in str(info.value)


@pytest.mark.parametrize("value,command", [
    ("diffusers/Qwen-Image-Edit-2511", "vibeboard models pull qwen-image-edit --source diffusers-2511"),
    ("umt5_xxl_fp16.safetensors", "vibeboard models pull umt5-xxl --source comfy"),
    ("Depth-Anything-V2-Large-hf", "vibeboard models pull depth-anything-v2 --source large"),
    ("InfCam/step35000.safetensors", "vibeboard models pull infcam"),
    ("my_own.safetensors", None)])
def test_pull_command_names_the_source_that_puts_the_file_there(value, command):
    from vibeboard.models import registry
    assert registry.pull_command(value) == command


@pytest.mark.parametrize("class_type,inputs", [
    ("VBStoryMemLoRA", {"high_noise_lora": "my_style.safetensors", "low_noise_lora": "my_style.safetensors",
                        "strength": 1.0}),
    ("VBReCoLoRA", {"lora_name": "my_style.safetensors", "strength": 1.0}),
])
def test_research_lora_nodes_report_a_missing_file_not_value_not_in_list(empty_models, class_type, inputs):
    registry = NodeRegistry.default()
    prompt = {k: dict(v, inputs=dict(v["inputs"])) for k, v in WORKFLOW.items() if k != "7"}
    prompt["2"] = {"class_type": class_type, "inputs": dict(inputs, wan=["1", 0])}
    result = validate_prompt(prompt, registry)
    text = result.summary()
    assert not result.ok and "not in list" not in text.lower()
    assert "my_style.safetensors' not found; expected at " + str(empty_models / "loras" / "my_style.safetensors") in text
