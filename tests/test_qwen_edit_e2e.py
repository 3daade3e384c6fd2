"""Edit Shirt end to end: a TINY random-config Qwen-Image-Edit-2509 saved in the published diffusers layout
(transformer/, vae/, text_encoder/, tokenizer/, processor/, scheduler/), loaded by the Qwen Edit Loader node and
run by the Edit Shirt node through the embedded executor with a mask and two reference images — on a machine
without torchvision, i.e. through vibeboard's own Qwen2-VL processor."""
import numpy as np
import pytest
import torch
from PIL import Image

from qwen_helpers import write_tiny_qwen_edit_folder
from vibeboard_runner.executor import Executor
from vibeboard_runner.registry import NodeRegistry


class Capture:
    """Test-only output node that keeps the IMAGE tensor it receives."""
    seen = []
    RETURN_TYPES = ()
    FUNCTION = "keep"
    OUTPUT_NODE = True
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE", {"tooltip": "captured"})}}

    def keep(self, images):
        Capture.seen.append(images.clone())
        return {"ui": {}}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    write_tiny_qwen_edit_folder(root / "diffusers" / "Qwen-Image-Edit-2509")
    return root


def save_png(path, array):
    Image.fromarray((np.clip(array, 0, 1) * 255).round().astype(np.uint8)).save(path)


def test_edit_shirt_node_runs_end_to_end_with_mask_and_two_references(tmp_path, models, monkeypatch):
    import diffusers.pipelines.qwenimage.pipeline_qwenimage_edit_plus as plus

    # The pipeline VAE-encodes every input at 1024² px; a smaller reference size keeps the tiny run fast (only
    # the size changes, not the code path). The vision path keeps its real 384² condition size.
    monkeypatch.setattr(plus, "VAE_IMAGE_SIZE", 128 * 96)
    monkeypatch.setenv("VIBEBOARD_QWEN_PROCESSOR", "builtin")  # the torchvision-free path, on any machine
    rng = np.random.default_rng(0)
    inputs = tmp_path / "in"
    inputs.mkdir()
    picture = rng.random((48, 64, 3))
    alpha = np.ones((48, 64))
    alpha[12:36, 16:48] = 0  # LoadImage: MASK = 1 − alpha → 1 on the shirt
    save_png(inputs / "actor.png", np.concatenate([picture, alpha[..., None]], -1))
    save_png(inputs / "shirt.png", rng.random((40, 40, 3)))      # Picture 2: another aspect than Picture 1
    save_png(inputs / "pattern.png", rng.random((30, 60, 3)))    # Picture 3

    registry = NodeRegistry.default()
    registry.register("Capture", Capture)
    ex = Executor(registry, output_dir=tmp_path / "out", input_dir=inputs, temp_dir=tmp_path / "t",
                  models_dir=str(models))
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "actor.png"}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "shirt.png"}},
        "3": {"class_type": "LoadImage", "inputs": {"image": "pattern.png"}},
        "4": {"class_type": "VBQwenEditLoader", "inputs": {"folder": "diffusers/Qwen-Image-Edit-2509",
                                                           "transformer_file": "", "vae_file": "",
                                                           "dtype": "fp32", "device": "cpu"}},
        "5": {"class_type": "VBQwenEdit", "inputs": {
            "qwen_edit": ["4", 0], "image": ["1", 0], "mask": ["1", 1], "reference_1": ["2", 0],
            "reference_2": ["3", 0], "instruction": "Put the shirt from picture 2 with the pattern of picture 3 on "
                                                    "the man in picture 1.",
            "steps": 2, "true_cfg": 4.0, "seed": 7, "negative_prompt": " ", "feather_px": 0.0,
            "megapixels": 0.012}},
        "6": {"class_type": "Capture", "inputs": {"images": ["5", 0]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": "edit_shirt"}},
    }
    Capture.seen.clear()
    res = ex.execute(prompt)
    assert res.status == "success", res.error
    out = Capture.seen[-1]
    assert out.shape == (1, 48, 64, 3) and out.dtype == torch.float32 and torch.isfinite(out).all()
    original = torch.from_numpy(np.asarray(Image.open(inputs / "actor.png").convert("RGB"), np.float32) / 255)
    inside = torch.zeros(48, 64, dtype=torch.bool)
    inside[12:36, 16:48] = True
    assert torch.equal(out[0][~inside], original[~inside])  # bit-exact outside the mask
    assert (out[0][inside] - original[inside]).abs().mean() > 0.05  # the (random) model changed the inside
    saved = [f for f in res.output_files() if f["node"] == "7"]
    assert len(saved) == 1
    assert Image.open(tmp_path / "out" / saved[0]["subfolder"] / saved[0]["filename"]).size == (64, 48)


def test_text_encoder_gets_3d_positions_for_image_tokens(models, monkeypatch):
    """diffusers drops mm_token_type_ids; the loader's hook restores what the model computes when it is given."""
    from vibeboard.vfx import qwen_edit as Q
    from vibeboard.vfx.qwen_vl_processor import QwenVLProcessor

    monkeypatch.setenv("VIBEBOARD_QWEN_PROCESSOR", "builtin")
    pipe = Q.load_pipeline(str(models / "diffusers" / "Qwen-Image-Edit-2509"), dtype=torch.float32)
    assert isinstance(pipe.processor, QwenVLProcessor)
    text = "Picture 1: <|vision_start|><|image_pad|><|vision_end|>red shirt"
    inputs = pipe.processor(text=[text], images=[Image.new("RGB", (112, 84), (200, 30, 30))], padding=True,
                            return_tensors="pt")
    as_pipeline = dict(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                       pixel_values=inputs["pixel_values"], image_grid_thw=inputs["image_grid_thw"],
                       output_hidden_states=True)
    with torch.no_grad():
        hooked = pipe.text_encoder(**as_pipeline).hidden_states[-1]
        explicit = pipe.text_encoder(**as_pipeline, mm_token_type_ids=inputs["mm_token_type_ids"]).hidden_states[-1]
        pipe.text_encoder._forward_pre_hooks.clear()
        plain = pipe.text_encoder(**as_pipeline).hidden_states[-1]
    assert torch.equal(hooked, explicit)
    assert not torch.allclose(plain, explicit, atol=1e-4)  # 1D positions really are different
