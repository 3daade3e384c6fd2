"""Registry and nodes agree on where files live: for every registry entry and source, a simulated
`vibeboard models pull` (tiny files in the published layout, written where pull puts them) is listed and loaded by
the node that uses the model, with no extra step. extra_model_paths.yaml is honoured for every model folder."""
import json
import os
import shutil
import sys
import types

import pytest
import torch
from safetensors.torch import save_file

import vibeboard
from vibeboard.common import runtime
from vibeboard.models import preflight, registry, tiny

MODELS = registry.load_registry()["models"]
SOURCES = [(name, source) for name, e in MODELS.items() for source in e["sources"]]


@pytest.fixture()
def root(tmp_path, monkeypatch):
    monkeypatch.setitem(runtime._dirs, "models", str(tmp_path / "models"))
    monkeypatch.delenv("VIBEBOARD_COMFYUI_DIR", raising=False)
    monkeypatch.delitem(sys.modules, "folder_paths", raising=False)
    return tmp_path / "models"


def pull(name, source, root, write=None):
    """Write tiny stand-ins exactly where `models pull NAME --source SOURCE` puts the files. Returns the paths."""
    out = []
    for repo_path, rel in registry.local_targets(name, source):
        path = os.path.join(str(root), rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if write is not None:
            write(repo_path, path)
        elif repo_path is None:  # a whole repo / folder
            os.makedirs(path, exist_ok=True)
            with open(os.path.join(path, "model_index.json" if MODELS[name]["sources"][source].get("diffusers")
                                   else "config.json"), "w") as fh:
                json.dump({}, fh)
        elif path.endswith(".safetensors"):
            save_file({"w": torch.zeros(1)}, path)
        else:
            with open(path, "wb") as fh:
                fh.write(b"{}" if path.endswith(".json") else b"not read")
        out.append(path)
    return out


def node_values(name, source, root):
    """(value a user gives the node, model folder, expected path) for each loadable thing a source puts down:
    weight files by their name inside the folder (pickles under the .safetensors name they get once converted),
    whole repos and tokenizer folders by folder-prefixed path ('diffusers/FLUX.1-dev')."""
    src = MODELS[name]["sources"][source]
    out, folders = [], set()
    for repo_path, rel in registry.local_targets(name, source):
        folder, inner = rel.split(os.sep, 1)
        path = os.path.join(str(root), rel)
        if repo_path is None:
            out.append((rel.replace(os.sep, "/"), folder, path))
        elif rel.endswith((".safetensors", ".ckpt", ".pt", ".pth")):
            if not rel.endswith(".safetensors"):
                inner, path = os.path.splitext(inner)[0] + ".safetensors", os.path.splitext(path)[0] + ".safetensors"
            out.append((inner, folder, path))
        elif src.get("subdir") and not any(f["path"].endswith((".safetensors", ".ckpt")) for f in src["files"]):
            folders.add((os.path.join(folder, src["subdir"]).replace(os.sep, "/"), folder,
                         os.path.join(str(root), folder, src["subdir"])))  # e.g. the tokenizer folder
    return out + sorted(folders)


def test_every_registry_node_exists():
    for name, e in MODELS.items():
        if e.get("status") == "planned":
            assert e["nodes"] == [] and e.get("status_note"), name
            continue
        assert e["nodes"], f"{name}: no node loads it (remove it or wire it)"
        for node in e["nodes"]:
            assert node in vibeboard.NODE_CLASS_MAPPINGS and node in preflight.MODEL_INPUTS, (name, node)
    for name, e in MODELS.items():
        assert all(need in MODELS for need in e.get("needs", [])), name


@pytest.mark.parametrize("name,source", SOURCES)
def test_a_pulled_source_is_found_by_its_node(root, name, source):
    e = MODELS[name]
    paths = pull(name, source, root)
    for path in paths:  # the one-time conversion of a pickled release (never read here)
        if path.endswith((".ckpt", ".pt", ".pth")):
            assert registry.resolve(os.path.relpath(path, str(root)), "checkpoints") in (None, path)
            save_file({"w": torch.zeros(1)}, os.path.splitext(path)[0] + ".safetensors")
    values = node_values(name, source, root)
    assert values, (name, source)
    for value, folder, path in values:
        assert registry.resolve(value, folder) == path, (name, source, value)
        if "/" not in value or value.split("/")[0] not in registry.FOLDERS:
            if folder in ("loras", "vae", "text_encoders", "clip_vision", "diffusion_models"):
                assert value in registry.choices(folder), (name, value)  # offered in the dropdowns
        if e.get("status") == "planned":
            continue
        accepted = [(node, input_name) for node in e["nodes"]
                    for input_name in preflight.MODEL_INPUTS[node]
                    if preflight.check(node, input_name, value) is None]
        assert accepted, f"{name}/{source}: no input of {e['nodes']} finds {value}"


def test_wan_loader_lists_and_loads_pulled_files(root):
    for name, source in (("wan2.1-t2v-1.3b", "comfy"), ("wan2.1-vae", "comfy"), ("umt5-xxl", "comfy-fp8"),
                         ("clip-vision-h", "comfy")):
        assert registry.status(name)[source]["present"] is False
    paths = tiny.write_comfy_layout(str(root), kinds=("t2v",))  # the registry names, in the registry folders
    assert paths["tokenizer"] == os.path.join(str(root), *registry.local_targets("umt5-tokenizer")[0][1].split(
        os.sep)[:2])
    for name, source in (("wan2.1-t2v-1.3b", "comfy"), ("wan2.1-vae", "comfy"), ("umt5-xxl", "comfy-fp8"),
                         ("clip-vision-h", "comfy")):
        assert registry.status(name)[source]["present"] is True, name
    from vibeboard.wan.nodes import VBWanModelLoader
    spec = VBWanModelLoader.INPUT_TYPES()
    assert "wan2.1_t2v_1.3B_bf16.safetensors" in spec["required"]["model"][0]
    assert "clip_vision_h.safetensors" in spec["optional"]["clip_vision"][0]
    (wan,) = VBWanModelLoader().load("wan2.1_t2v_1.3B_bf16.safetensors", "wan_2.1_vae.safetensors",
                                     "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "fp32", "clip_vision_h.safetensors")
    assert wan.has("transformer") and wan.has("vae") and wan.has("text_encoder")


def test_wan22_vae_from_its_pulled_diffusers_files(root):
    def write(repo_path, path):
        if repo_path.endswith("config.json"):
            tiny.build_vae(wan22=True).save_pretrained(os.path.dirname(path))
    pull("wan2.2-vae", "diffusers-vae", root, write)
    from vibeboard.models import loaders
    from vibeboard.wan.nodes import VBWanModelLoader
    name = "wan2.2_vae/diffusion_pytorch_model.safetensors"
    assert name in VBWanModelLoader.INPUT_TYPES()["required"]["vae"][0]
    vae = loaders.load_wan_vae(registry.resolve(name, "vae"), "fp32")
    assert vae.config.z_dim == tiny.build_vae(wan22=True).config.z_dim


def test_genfocus_and_learn2refocus_load_with_their_defaults(root):
    import vfx_helpers as H
    from vibeboard.optics_learned.nodes import VBGenFocusLoader, VBLearn2RefocusLoader

    (flux_dir,) = pull("flux1-dev", "diffusers", root, lambda _r, p: H.write_flux_folder(p))
    pipe_transformer = H.tiny_flux()
    pull("genfocus-loras", "hf", root, lambda _r, p: H.write_lora(p, pipe_transformer))
    spec = VBGenFocusLoader.INPUT_TYPES()["required"]
    defaults = {k: v[1]["default"] for k, v in spec.items()}
    (handle,) = VBGenFocusLoader().load(defaults["flux_folder"], defaults["deblur_lora"], defaults["bokeh_lora"],
                                        "fp32", "cpu")
    assert handle.adapters == ("deblurring", "bokeh") and handle.deblur_variant == "deblurNet"

    unet_dir = os.path.join(str(root), "diffusers", "learn2refocus")  # the snapshot keeps the repo's tree
    assert registry.local_targets("learn2refocus-unet")[0][1] == os.path.join("diffusers", "learn2refocus")
    H.tiny_svd_unet().save_pretrained(os.path.join(unet_dir, "checkpoint-200000", "unet"), safe_serialization=True)

    def write_svd(_r, path):
        vae, enc = H.tiny_svd_parts()
        vae.save_pretrained(os.path.join(path, "vae"), safe_serialization=True)
        enc.save_pretrained(os.path.join(path, "image_encoder"), safe_serialization=True)
    pull("svd-img2vid", "diffusers", root, write_svd)
    spec = VBLearn2RefocusLoader.INPUT_TYPES()["required"]
    (model,) = VBLearn2RefocusLoader().load(spec["unet_folder"][1]["default"], spec["svd_folder"][1]["default"],
                                            "fp32", "cpu")
    assert model.unet.config.in_channels == 8


def test_qwen_edit_folders_load(root):
    from qwen_helpers import write_tiny_qwen_edit_folder
    from vibeboard.vfx.nodes import VBQwenEditLoader

    (folder_2509,) = pull("qwen-image-edit", "diffusers", root, lambda _r, p: write_tiny_qwen_edit_folder(
        __import__("pathlib").Path(p)))
    (folder_2511,) = registry.local_targets("qwen-image-edit", "diffusers-2511")
    folder_2511 = os.path.join(str(root), folder_2511[1])
    shutil.copytree(folder_2509, folder_2511)
    cfg_path = os.path.join(folder_2511, "transformer", "config.json")
    with open(cfg_path) as fh:
        cfg = json.load(fh)
    with open(cfg_path, "w") as fh:
        json.dump({**cfg, "zero_cond_t": True}, fh)
    default = VBQwenEditLoader.INPUT_TYPES()["required"]["folder"][1]["default"]
    assert VBQwenEditLoader().load(default, "", "", "fp32", "cpu")[0].transformer.zero_cond_t is False
    pipe = VBQwenEditLoader().load("diffusers/Qwen-Image-Edit-2511", "", "", "fp32", "cpu")[0]
    assert pipe.transformer.zero_cond_t is True


def test_depth_models_are_listed_and_load(root):
    from test_optics_depth_model import save_tiny_depth_anything, save_tiny_depth_pro
    from vibeboard.optics import depth_estimation
    from vibeboard.optics.nodes import VBDepthEstimate

    depth_estimation._cache.clear()
    pull("depth-anything-v2", "small", root, lambda _r, p: save_tiny_depth_anything(p))
    pull("depth-pro", "hf", root, lambda _r, p: save_tiny_depth_pro(p))
    listed = VBDepthEstimate.INPUT_TYPES()["required"]["model"][0]
    assert listed[:2] == ["Depth-Anything-V2-Small-hf", "DepthPro-hf"]
    image = torch.rand(1, 40, 56, 3)
    for model in ("Depth-Anything-V2-Small-hf", "DepthPro-hf"):
        depth, _ = VBDepthEstimate().estimate(model, image, "model native", 1.0, 100.0, "fp32")
        assert depth.shape == (1, 40, 56)
    depth_estimation._cache.clear()


def test_pickled_infcam_release_is_explained_then_converted_file_loads(root):
    from vibeboard.common.runtime import NodeInputError
    from vibeboard.vfx.infcam import InfCamWan, infcam_to_diffsynth_state
    from vibeboard.vfx.nodes import VBInfCamLoader

    (ckpt,) = pull("infcam", "hf", root)
    tiny.write_comfy_layout(str(root), kinds=())
    spec = VBInfCamLoader.INPUT_TYPES()["required"]
    d = {k: v[1]["default"] for k, v in spec.items() if len(v) > 1 and "default" in v[1]}
    args = (d["checkpoint"], d["vae"], d["text_encoder"], d["tokenizer"], "fp32", "cpu")
    with pytest.raises(NodeInputError, match="never unpickles.*weights_only=True") as info:
        VBInfCamLoader().load(*args, attention_head_dim=16)
    assert os.path.splitext(ckpt)[0] + ".safetensors" in str(info.value)
    model = InfCamWan(tiny.build_transformer("t2v", seed=1)).init_from_base()
    save_file({k: v.clone().contiguous() for k, v in infcam_to_diffsynth_state(model).items()},
              os.path.splitext(ckpt)[0] + ".safetensors")
    (handle,) = VBInfCamLoader().load(*args, attention_head_dim=16)
    assert handle.model is not None and handle.tokenizer is not None


def test_flashportrait_lists_what_upstream_loads_and_marks_pickles(root):
    e = MODELS["flashportrait"]
    src = e["sources"]["hf"]
    assert [f["path"] for f in src["files"]] == ["transformer.pt", "portrait_encoder.pt", "face_det.onnx",
                                                 "face_landmark.onnx", "pd_fpg.pth"]
    assert {f["path"]: f["format"] for f in src["files"]} == {
        "transformer.pt": "pickle", "portrait_encoder.pt": "pickle", "face_det.onnx": "onnx",
        "face_landmark.onnx": "onnx", "pd_fpg.pth": "pickle"}
    assert "weights_only=True" in src["convert_note"] and "save_file" in src["convert_note"]
    paths = pull("flashportrait", "hf", root)  # upstream's checkpoints/FlashPortrait folder
    assert {os.path.relpath(p, str(root)) for p in paths} == {
        os.path.join("checkpoints", "FlashPortrait", f["path"]) for f in src["files"]}
    assert not any(node in preflight.MODEL_INPUTS for node in e["nodes"])


def test_extra_model_paths_yaml_is_honoured_for_every_folder(root, tmp_path, monkeypatch):
    comfy = tmp_path / "ComfyUI"
    (comfy / "models").mkdir(parents=True)
    elsewhere = tmp_path / "big_disk"
    (comfy / "extra_model_paths.yaml").write_text(
        "mine:\n  base_path: " + str(elsewhere) + "\n  loras: my_loras\n  depth: |\n    depth_a\n    depth_b\n"
        "  diffusers: diffusers\n  checkpoints: ckpts\n  vae: vae\n")
    monkeypatch.setenv("VIBEBOARD_COMFYUI_DIR", str(comfy))
    lora = elsewhere / "my_loras" / "Genfocus" / "deblurNet.safetensors"
    lora.parent.mkdir(parents=True)
    save_file({"w": torch.zeros(1)}, str(lora))
    (elsewhere / "depth_b" / "Depth-Anything-V2-Small-hf").mkdir(parents=True)
    (elsewhere / "depth_b" / "Depth-Anything-V2-Small-hf" / "config.json").write_text("{}")
    (elsewhere / "diffusers" / "FLUX.1-dev").mkdir(parents=True)
    assert registry.resolve("Genfocus/deblurNet.safetensors", "loras") == str(lora)
    assert "Genfocus/deblurNet.safetensors" in registry.list_folder("loras")
    assert registry.resolve("Depth-Anything-V2-Small-hf", "depth") == str(elsewhere / "depth_b" /
                                                                            "Depth-Anything-V2-Small-hf")
    assert registry.resolve("diffusers/FLUX.1-dev", "diffusers") == str(elsewhere / "diffusers" / "FLUX.1-dev")
    assert preflight.check("VBGenFocusLoader", "deblur_lora", "Genfocus/deblurNet.safetensors") is None
    from vibeboard.optics.nodes import VBDepthEstimate
    assert VBDepthEstimate.INPUT_TYPES()["required"]["model"][0][0] == "Depth-Anything-V2-Small-hf"


def test_inside_comfyui_folder_paths_adds_every_folder(root, tmp_path, monkeypatch):
    extra = {"loras": [str(tmp_path / "x" / "loras")], "depth": [str(tmp_path / "x" / "depth")]}

    def get_folder_paths(name):
        return list(extra[name])  # ComfyUI raises KeyError for a folder it does not know

    monkeypatch.setitem(sys.modules, "folder_paths", types.SimpleNamespace(
        get_folder_paths=get_folder_paths, models_dir=str(tmp_path / "comfy_models")))
    (tmp_path / "x" / "depth" / "DepthPro-hf").mkdir(parents=True)
    assert registry.resolve("DepthPro-hf", "depth") == str(tmp_path / "x" / "depth" / "DepthPro-hf")
    assert str(tmp_path / "x" / "loras") in registry.folder_dirs("loras")
