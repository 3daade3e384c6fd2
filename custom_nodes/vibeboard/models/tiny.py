"""Tiny random-config Wan family models, written to disk in the layouts users really have.

Used by `vibeboard selftest` and by the tests: the same loaders that read the published checkpoints read these
files, so a wrong key mapping or config inference fails here. Sizes are tiny (dim 32, 2 layers); nothing here
is a real model and nothing here is used to produce a result for a user.
"""
from __future__ import annotations

import json
import os

import torch

from . import wan_keys

TEXT_LEN = 512  # Wan pads prompts to 512 tokens; the I2V cross-attention relies on it.

TINY_T2V = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=16,
                out_channels=16, text_dim=32, freq_dim=32, ffn_dim=64, num_layers=2,
                cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)
TINY_I2V = dict(TINY_T2V, in_channels=36, image_dim=24, added_kv_proj_dim=32)
TINY_VACE = dict(TINY_T2V, vace_layers=[0], vace_in_channels=96)
TINY_TI2V = dict(TINY_T2V, in_channels=48, out_channels=48)
# Wan2.2 VAE layout (residual blocks, 2x2 patchify, 48 channels, 16x spatial)
TINY_VAE22 = dict(base_dim=8, decoder_base_dim=8, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                  temperal_downsample=[False, True, True], is_residual=True, in_channels=12, out_channels=12,
                  patch_size=2, scale_factor_spatial=16, scale_factor_temporal=4,
                  latents_mean=[0.0] * 48, latents_std=[1.0] * 48)
TINY_VAE = dict(base_dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                temperal_downsample=[False, True, True])
TINY_UMT5 = dict(vocab_size=64, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                 relative_attention_num_buckets=8, relative_attention_max_distance=16,
                 feed_forward_proj="gated-gelu", is_encoder_decoder=False, pad_token_id=0, eos_token_id=1)
TINY_CLIP = dict(hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=3,
                 image_size=32, patch_size=8, projection_dim=24)
TINY_WORDS = ["<pad>", "</s>", "<unk>"] + [f"w{i}" for i in range(8)] + (
    "a the cat dog red blue walks runs in city forest night day camera slowly fast car sky sea over "
    "under man woman light dark rain snow tree house road river boat bird fish hand face eye").split()


def seeded(seed: int):
    torch.manual_seed(seed)


def build_transformer(kind: str = "t2v", seed: int = 0, **overrides):
    from diffusers import WanTransformer3DModel, WanVACETransformer3DModel
    seeded(seed)
    cfg = dict({"t2v": TINY_T2V, "i2v": TINY_I2V, "vace": TINY_VACE, "ti2v": TINY_TI2V}[kind], **overrides)
    cls = WanVACETransformer3DModel if kind == "vace" else WanTransformer3DModel
    model = cls(**cfg)
    with torch.no_grad():  # default init leaves some zeros (biases); make every weight matter
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def build_vae(seed: int = 0, wan22: bool = False):
    from diffusers import AutoencoderKLWan
    seeded(seed)
    vae = AutoencoderKLWan(**(TINY_VAE22 if wan22 else TINY_VAE))
    with torch.no_grad():
        for p in vae.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return vae.eval()


def build_umt5(seed: int = 0):
    from transformers import UMT5Config, UMT5EncoderModel
    seeded(seed)
    return UMT5EncoderModel(UMT5Config(**TINY_UMT5)).eval()


def build_clip(seed: int = 0):
    from transformers import CLIPVisionConfig, CLIPVisionModel
    seeded(seed)
    return CLIPVisionModel(CLIPVisionConfig(**TINY_CLIP)).eval()


def save_tokenizer(folder: str) -> None:
    """A word-level tokenizer with the UMT5 special tokens (the real one is a SentencePiece unigram)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    vocab = {w: i for i, w in enumerate(TINY_WORDS[:TINY_UMT5["vocab_size"]])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(folder)


def _save(state: dict, path: str, metadata=None) -> str:
    from safetensors.torch import save_file
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in state.items()}, path, metadata=metadata)
    return path


# ---- layouts -----------------------------------------------------------------------------------
def save_comfy_transformer(model, path: str, prefix: str = "", dtype=None) -> str:
    """Original Wan key names (what ComfyUI's repackaged `wan2.1_*.safetensors` carry)."""
    state = {prefix + wan_keys.diffusers_to_wan_key(k): (v.to(dtype) if dtype else v)
             for k, v in model.state_dict().items()}
    return _save(state, path)


def save_comfy_vae(vae, path: str) -> str:
    nrb = vae.config.num_res_blocks
    return _save({wan_keys.diffusers_to_wan_vae_key(k, nrb): v for k, v in vae.state_dict().items()}, path)


def save_comfy_umt5(encoder, path: str, fp8_scaled: bool = False) -> str:
    """ComfyUI text-encoder file; `fp8_scaled` writes the `scaled_fp8` layout (fp8 weight + scale_weight)."""
    state = {k: v for k, v in encoder.state_dict().items() if k != "encoder.embed_tokens.weight"}
    if fp8_scaled:
        out = {"scaled_fp8": torch.empty(0, dtype=torch.float8_e4m3fn)}
        for k, v in state.items():
            if k.endswith(".weight") and v.ndim == 2 and "shared" not in k and "relative_attention" not in k:
                scale = v.abs().max().float().clamp(min=1e-8) / 448.0
                out[k] = (v.float() / scale).to(torch.float8_e4m3fn)
                out[k[:-len("weight")] + "scale_weight"] = scale.reshape(1)
            else:
                out[k] = v
        state = out
    return _save(state, path)


def save_comfy_clip(model, path: str) -> str:
    """Published CLIP vision files (ComfyUI clip_vision_h, HF image_encoder) use `vision_model.*` names."""
    return _save({(k if k.startswith(("vision_model.", "visual_projection")) else "vision_model." + k): v
                  for k, v in model.state_dict().items()}, path)


def write_comfy_layout(root: str, kinds=("t2v", "i2v", "vace"), seed: int = 0) -> dict:
    """ComfyUI `models/` tree: diffusion_models/, vae/, text_encoders/, clip_vision/ (+ a tokenizer folder)."""
    paths = {}
    names = {"t2v": "wan2.1_t2v_1.3B_bf16.safetensors", "i2v": "wan2.1_i2v_480p_14B_bf16.safetensors",
             "vace": "wan2.1_vace_1.3B_fp16.safetensors"}
    for i, kind in enumerate(kinds):
        paths[kind] = save_comfy_transformer(build_transformer(kind, seed + i),
                                             os.path.join(root, "diffusion_models", names[kind]))
    paths["vae"] = save_comfy_vae(build_vae(seed), os.path.join(root, "vae", "wan_2.1_vae.safetensors"))
    paths["umt5"] = save_comfy_umt5(build_umt5(seed), os.path.join(
        root, "text_encoders", "umt5_xxl_fp8_e4m3fn_scaled.safetensors"), fp8_scaled=True)
    paths["clip_vision"] = save_comfy_clip(build_clip(seed), os.path.join(
        root, "clip_vision", "clip_vision_h.safetensors"))
    paths["tokenizer"] = os.path.join(root, "text_encoders", "umt5-xxl-tokenizer")
    save_tokenizer(paths["tokenizer"])
    return paths


def write_diffusers_layout(folder: str, kind: str = "t2v", seed: int = 0) -> str:
    """A `Wan-AI/Wan2.1-*-Diffusers` style folder: model_index.json + one subfolder per component."""
    transformer = build_transformer(kind, seed)
    transformer.save_pretrained(os.path.join(folder, "transformer"))
    build_vae(seed, wan22=kind == "ti2v").save_pretrained(os.path.join(folder, "vae"))
    build_umt5(seed).save_pretrained(os.path.join(folder, "text_encoder"))
    save_tokenizer(os.path.join(folder, "tokenizer"))
    os.makedirs(os.path.join(folder, "scheduler"), exist_ok=True)
    with open(os.path.join(folder, "scheduler", "scheduler_config.json"), "w") as f:
        json.dump({"_class_name": "UniPCMultistepScheduler", "flow_shift": 3.0, "num_train_timesteps": 1000,
                   "prediction_type": "flow_prediction", "use_flow_sigmas": True}, f)
    pipeline = {"t2v": "WanPipeline", "i2v": "WanImageToVideoPipeline", "vace": "WanVACEPipeline",
                "ti2v": "WanImageToVideoPipeline"}[kind]
    index = {"_class_name": pipeline, "transformer": ["diffusers", type(transformer).__name__],
             "vae": ["diffusers", "AutoencoderKLWan"], "text_encoder": ["transformers", "UMT5EncoderModel"],
             "tokenizer": ["transformers", "PreTrainedTokenizerFast"],
             "scheduler": ["diffusers", "UniPCMultistepScheduler"]}
    if kind == "i2v":
        build_clip(seed).save_pretrained(os.path.join(folder, "image_encoder"))
        index["image_encoder"] = ["transformers", "CLIPVisionModel"]
    with open(os.path.join(folder, "model_index.json"), "w") as f:
        json.dump(index, f)
    return folder


def write_lora(path: str, model, fmt: str = "peft", rank: int = 4, seed: int = 0, alpha=None,
               targets=("attn1.to_q", "attn2.to_v", "ffn.net.0.proj"), blocks=(0,)) -> dict:
    """A LoRA file in one of the shared formats; returns {diffusers module name: (down, up, alpha)}."""
    seeded(seed)
    out, truth = {}, {}
    modules = dict(model.named_modules())
    for b in blocks:
        for t in targets:
            name = f"blocks.{b}.{t}"
            lin = modules[name]
            down = torch.randn(rank, lin.in_features) * 0.1
            up = torch.randn(lin.out_features, rank) * 0.1
            truth[name] = (down, up, alpha if alpha is not None else rank)
            wan_name = wan_keys.diffusers_module_to_wan(name)
            if fmt == "peft":
                out[f"transformer.{name}.lora_A.weight"] = down
                out[f"transformer.{name}.lora_B.weight"] = up
            elif fmt == "diffusion_model":
                out[f"diffusion_model.{wan_name}.lora_A.weight"] = down
                out[f"diffusion_model.{wan_name}.lora_B.weight"] = up
            elif fmt == "kohya":
                base = "lora_unet_" + wan_name.replace(".", "_")
                out[f"{base}.lora_down.weight"] = down
                out[f"{base}.lora_up.weight"] = up
                if alpha is not None:
                    out[f"{base}.alpha"] = torch.tensor(float(alpha))
            else:
                raise ValueError(fmt)
    _save(out, path)
    return truth
