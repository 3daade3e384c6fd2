"""Tiny Qwen-Image-Edit-2509 pieces in the published layout, for tests/test_qwen_*."""
import json

import torch

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


def write_processor_folder(folder, tok=None, **config):
    """processor/ as published: tokenizer files + preprocessor_config.json (`config` overrides values)."""
    folder.mkdir(parents=True, exist_ok=True)
    (tok or tiny_qwen2_tokenizer()).save_pretrained(str(folder))
    (folder / "preprocessor_config.json").write_text(json.dumps({**PREPROCESSOR_CONFIG, **config}))
    video = {k: v for k, v in {**PREPROCESSOR_CONFIG, **config}.items() if k != "image_processor_type"}
    (folder / "video_preprocessor_config.json").write_text(
        json.dumps({**video, "video_processor_type": "Qwen2VLVideoProcessor"}))
    return folder


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
    write_processor_folder(folder / "processor", tok)
    index = json.loads((folder / "model_index.json").read_text())
    index["processor"] = ["transformers", "Qwen2VLProcessor"]
    (folder / "model_index.json").write_text(json.dumps(index))
