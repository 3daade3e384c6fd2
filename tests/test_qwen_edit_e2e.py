"""Edit Shirt end to end: a TINY random-config Qwen-Image-Edit-2509 saved in the published diffusers layout
(transformer/, vae/, text_encoder/, tokenizer/, processor/, scheduler/), loaded by the Qwen Edit Loader node and
run by the Edit Shirt node through the embedded executor with a mask and two reference images — on a machine
without torchvision, i.e. through vibeboard's own Qwen2-VL processor."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from runner.executor import Executor
from runner.registry import NodeRegistry

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
            "<|video_pad|>"]
# Qwen2.5-VL-7B-Instruct's preprocessor_config.json (the one Qwen-Image-Edit-2509 ships in processor/)
PREPROCESSOR_CONFIG = {"min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "temporal_patch_size": 2,
                       "merge_size": 2, "image_mean": [0.48145466, 0.4578275, 0.40821073],
                       "image_std": [0.26862954, 0.26130258, 0.27577711],
                       "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2_5_VLProcessor"}


def tiny_qwen2_tokenizer():
    """A real Qwen2Tokenizer (byte-level BPE) with a 256-byte vocabulary and no merges, plus Qwen's specials."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import Qwen2Tokenizer

    tok = Qwen2Tokenizer(vocab={ch: i for i, ch in enumerate(sorted(ByteLevel.alphabet()))}, merges=[])
    tok.add_special_tokens({"additional_special_tokens": SPECIALS[1:]})
    return tok


def write_tiny_qwen_edit_folder(folder, seed=0):
    from diffusers import (AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImageEditPlusPipeline,
                           QwenImageTransformer2DModel)
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tok = tiny_qwen2_tokenizer()
    ids = dict(zip(SPECIALS, tok.convert_tokens_to_ids(SPECIALS)))
    torch.manual_seed(seed)
    text_encoder = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, bos_token_id=ids["<|endoftext|>"],
                         eos_token_id=ids["<|im_end|>"],
                         rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 1e6}),
        vision_config=dict(depth=2, hidden_size=16, intermediate_size=32, num_heads=2, out_hidden_size=32,
                           fullatt_block_indexes=[1]),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])).eval()
    transformer = QwenImageTransformer2DModel(patch_size=2, in_channels=64, out_channels=16, num_layers=2,
                                              attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                              axes_dims_rope=(4, 6, 6)).eval()
    vae = AutoencoderKLQwenImage(base_dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=1, attn_scales=[],
                                 temperal_downsample=[False, True, True]).eval()
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=0.9,
                                                base_image_seq_len=256, max_image_seq_len=8192, shift_terminal=0.02,
                                                time_shift_type="exponential")
    # transformers' Qwen2VLProcessor cannot be built without torchvision: save the rest, then write processor/
    # as the published checkpoint has it (tokenizer files + preprocessor_config.json)
    QwenImageEditPlusPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tok,
                              processor=None, transformer=transformer).save_pretrained(str(folder))
    tok.save_pretrained(str(folder / "processor"))
    (folder / "processor" / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR_CONFIG))
    index = json.loads((folder / "model_index.json").read_text())
    index["processor"] = ["transformers", "Qwen2VLProcessor"]
    (folder / "model_index.json").write_text(json.dumps(index))


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
