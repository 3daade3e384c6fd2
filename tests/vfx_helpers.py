"""Tiny random models written in the layouts users have, for the VFX / learned-optics tests."""
import os

import torch
from safetensors.torch import save_file

FLUX_TINY = dict(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
                 num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=True,
                 axes_dims_rope=(4, 6, 6))
# OminiControl / GenFocus LoRA targets (diffusers module names)
LORA_TARGETS = ["x_embedder", "transformer_blocks.0.norm1.linear", "transformer_blocks.0.attn.to_q",
                "transformer_blocks.0.attn.to_k", "transformer_blocks.0.attn.to_v",
                "transformer_blocks.0.attn.to_out.0", "transformer_blocks.0.ff.net.2",
                "single_transformer_blocks.0.norm.linear", "single_transformer_blocks.0.proj_mlp",
                "single_transformer_blocks.0.proj_out", "single_transformer_blocks.0.attn.to_q",
                "single_transformer_blocks.0.attn.to_k", "single_transformer_blocks.0.attn.to_v"]
WORDS = ["<pad>", "</s>", "<unk>", "<|startoftext|>", "<|endoftext|>"] + (
    "a sharp photo with everything in focus an excellent large aperture").split()


def tiny_flux(seed=0):
    from diffusers import FluxTransformer2DModel
    torch.manual_seed(seed)
    model = FluxTransformer2DModel(**FLUX_TINY)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def tiny_flux_vae(seed=0):
    from diffusers import AutoencoderKL
    torch.manual_seed(seed)
    return AutoencoderKL(block_out_channels=(8, 8, 8, 8), down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, layers_per_block=1,
                         norm_num_groups=4, shift_factor=0.1, scaling_factor=0.5).eval()


def write_lora(path, model, rank=2, seed=0, alpha=None):
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name in LORA_TARGETS:
        lin = model.get_submodule(name)
        state[f"transformer.{name}.lora_A.weight"] = torch.randn(rank, lin.in_features, generator=g) * 0.1
        state[f"transformer.{name}.lora_B.weight"] = torch.randn(lin.out_features, rank, generator=g) * 0.1
        if alpha:
            state[f"transformer.{name}.alpha"] = torch.tensor(float(alpha))
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    save_file(state, str(path))
    return state


def _word_tokenizer(max_len):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    tok = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=max_len)


def write_flux_folder(folder, seed=0):
    """A FLUX.1-dev-shaped diffusers folder (tiny CLIP-L / T5 / VAE / transformer, word-level tokenizers)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel
    torch.manual_seed(seed)
    clip = CLIPTextModel(CLIPTextConfig(vocab_size=len(WORDS), hidden_size=32, intermediate_size=64,
                                        num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=77,
                                        eos_token_id=1, pad_token_id=0, bos_token_id=3))
    t5 = T5EncoderModel(T5Config(vocab_size=len(WORDS), d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4,
                                 decoder_start_token_id=0, pad_token_id=0, eos_token_id=1))
    pipe = FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=tiny_flux_vae(seed), text_encoder=clip,
                        tokenizer=_word_tokenizer(77), text_encoder_2=t5, tokenizer_2=_word_tokenizer(512),
                        transformer=tiny_flux(seed))
    pipe.save_pretrained(str(folder))
    return pipe


def tiny_svd_unet(seed=0, in_channels=8):
    from diffusers import UNetSpatioTemporalConditionModel
    torch.manual_seed(seed)
    return UNetSpatioTemporalConditionModel(
        sample_size=8, in_channels=in_channels, out_channels=4, block_out_channels=(32, 32),
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"), layers_per_block=1,
        cross_attention_dim=16, num_attention_heads=(2, 2), addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=24, transformer_layers_per_block=1).eval()


def tiny_svd_parts(seed=0):
    from diffusers import AutoencoderKLTemporalDecoder
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
    torch.manual_seed(seed)
    vae = AutoencoderKLTemporalDecoder(block_out_channels=(32, 32, 32), down_block_types=("DownEncoderBlock2D",) * 3,
                                       latent_channels=4, layers_per_block=1).eval()
    enc = CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                                         num_attention_heads=2, image_size=224, patch_size=56,
                                                         projection_dim=16)).eval()
    return vae, enc


def write_refocus_folders(models_root, seed=0):
    """models/learn2refocus/checkpoint-200000/unet and models/diffusers/stable-video-diffusion-img2vid/{vae,…}."""
    import json

    from vibeboard.optics.learn2refocus import SVD_SCHEDULER
    unet_dir = os.path.join(str(models_root), "learn2refocus", "checkpoint-200000", "unet")
    tiny_svd_unet(seed).save_pretrained(unet_dir, safe_serialization=True)
    svd = os.path.join(str(models_root), "diffusers", "stable-video-diffusion-img2vid")
    vae, enc = tiny_svd_parts(seed)
    vae.save_pretrained(os.path.join(svd, "vae"), safe_serialization=True)
    enc.save_pretrained(os.path.join(svd, "image_encoder"), safe_serialization=True)
    os.makedirs(os.path.join(svd, "scheduler"), exist_ok=True)
    with open(os.path.join(svd, "scheduler", "scheduler_config.json"), "w") as fh:
        json.dump({"_class_name": "EulerDiscreteScheduler", **SVD_SCHEDULER}, fh)
    return unet_dir, svd
