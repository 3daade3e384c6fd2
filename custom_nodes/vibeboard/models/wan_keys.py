"""Key names: the original Wan checkpoints (Wan-Video/Wan2.1 `WanModel`, ComfyUI single files) ↔ diffusers.

The original names are what `wan2.1_t2v_1.3B_bf16.safetensors` and friends carry; diffusers renames modules
(`self_attn.q` → `attn1.to_q`, `norm3` → `norm2`, …). Mapping is done per dotted segment so the same rules
serve parameter keys, module names (for LoRA targets) and both directions.
"""
from __future__ import annotations

import re

# Prefixes that wrap the bare model in ComfyUI / training-tool files.
WAN_PREFIXES = ("model.diffusion_model.", "diffusion_model.", "model.")

# Top-level module renames (original → diffusers).
_TOP = [
    ("text_embedding.0", "condition_embedder.text_embedder.linear_1"),
    ("text_embedding.2", "condition_embedder.text_embedder.linear_2"),
    ("time_embedding.0", "condition_embedder.time_embedder.linear_1"),
    ("time_embedding.2", "condition_embedder.time_embedder.linear_2"),
    ("time_projection.1", "condition_embedder.time_proj"),
    ("img_emb.proj.0", "condition_embedder.image_embedder.norm1"),
    ("img_emb.proj.1", "condition_embedder.image_embedder.ff.net.0.proj"),
    ("img_emb.proj.3", "condition_embedder.image_embedder.ff.net.2"),
    ("img_emb.proj.4", "condition_embedder.image_embedder.norm2"),
    ("img_emb.emb_pos", "condition_embedder.image_embedder.pos_embed"),
    ("head.head", "proj_out"),
    ("head.modulation", "scale_shift_table"),
]

# Inside `blocks.N.` / `vace_blocks.N.` (original → diffusers).
_BLOCK = [
    ("self_attn.q", "attn1.to_q"), ("self_attn.k", "attn1.to_k"), ("self_attn.v", "attn1.to_v"),
    ("self_attn.o", "attn1.to_out.0"), ("self_attn.norm_q", "attn1.norm_q"),
    ("self_attn.norm_k", "attn1.norm_k"),
    ("cross_attn.q", "attn2.to_q"), ("cross_attn.k", "attn2.to_k"), ("cross_attn.v", "attn2.to_v"),
    ("cross_attn.o", "attn2.to_out.0"), ("cross_attn.norm_q", "attn2.norm_q"),
    ("cross_attn.norm_k", "attn2.norm_k"), ("cross_attn.k_img", "attn2.add_k_proj"),
    ("cross_attn.v_img", "attn2.add_v_proj"), ("cross_attn.norm_k_img", "attn2.norm_added_k"),
    # Original block: norm1 (self-attn, no affine), norm3 (cross-attn, affine), norm2 (ffn, no affine).
    ("norm3", "norm2"),
    ("modulation", "scale_shift_table"),
    ("ffn.0", "ffn.net.0.proj"), ("ffn.2", "ffn.net.2"),
    ("before_proj", "proj_in"), ("after_proj", "proj_out"),
]

_BLOCK_RE = re.compile(r"^((?:vace_)?blocks\.\d+)(?:\.(.*))?$")
_PARAM_SUFFIXES = ("weight", "bias", "scale_weight", "scale_input", "weight_scale", "input_scale")


def strip_prefix(key: str) -> str:
    for prefix in WAN_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def _rename(path: str, table, reverse: bool) -> str:
    """Rename the longest matching leading segment run of `path` using table."""
    pairs = [(b, a) for a, b in table] if reverse else table
    # Longest source first so "self_attn.norm_q" wins over "self_attn.q"-style prefixes.
    for src, dst in sorted(pairs, key=lambda p: -len(p[0])):
        if path == src or path.startswith(src + "."):
            return dst + path[len(src):]
    return path


def _split_param(key: str):
    """('blocks.0.self_attn.q', 'weight') — the trailing tensor name, if any."""
    head, _, tail = key.rpartition(".")
    if tail in _PARAM_SUFFIXES and head:
        return head, "." + tail
    return key, ""


def _map_module(name: str, reverse: bool) -> str:
    if not reverse and name == "head.modulation":
        return "scale_shift_table"
    match = _BLOCK_RE.match(name)
    if match:
        block, rest = match.group(1), match.group(2)
        return block if rest is None else f"{block}.{_rename(rest, _BLOCK, reverse)}"
    return _rename(name, _TOP, reverse)


def wan_to_diffusers_key(key: str) -> str:
    """Original Wan (or ComfyUI-prefixed) key → diffusers WanTransformer3DModel key."""
    module, suffix = _split_param(strip_prefix(key))
    # Parameters stored directly on a module path (modulation tables) have no suffix.
    return _map_module(module, False) + suffix


def diffusers_to_wan_key(key: str) -> str:
    """diffusers key → original Wan key (used to write test checkpoints and kohya LoRA names)."""
    module, suffix = _split_param(key)
    if module == "scale_shift_table":
        return "head.modulation"
    return _map_module(module, True) + suffix


def diffusers_module_to_wan(name: str) -> str:
    return _map_module(name, True)


def convert_wan_transformer(state: dict) -> dict:
    return {wan_to_diffusers_key(k): v for k, v in state.items()}


def is_original_wan(keys) -> bool:
    keys = [strip_prefix(k) for k in keys]
    return any(k.startswith("head.head") or ".self_attn." in k for k in keys)


# ---- VAE (Wan2.1 `WanVAE_`) ---------------------------------------------------------------------
_RES = {"residual.0": "norm1", "residual.2": "conv1", "residual.3": "norm2", "residual.6": "conv2",
        "shortcut": "conv_shortcut"}
_HEAD = {"head.0": "norm_out", "head.2": "conv_out", "conv1": "conv_in"}


def _res(rest: str, reverse: bool = False) -> str:
    table = {v: k for k, v in _RES.items()} if reverse else _RES
    for src, dst in table.items():
        if rest.startswith(src + "."):
            return dst + rest[len(src):]
    return rest


def wan_vae_to_diffusers_key(key: str, num_res_blocks: int = 2) -> str:
    """Original Wan2.1 VAE key → diffusers AutoencoderKLWan key (any dim_mult with the Wan block layout)."""
    key = strip_prefix(key)
    if key.startswith("conv1."):
        return "quant_conv." + key[6:]
    if key.startswith("conv2."):
        return "post_quant_conv." + key[6:]
    side, _, rest = key.partition(".")
    if side not in ("encoder", "decoder"):
        return key
    for src, dst in _HEAD.items():
        if rest.startswith(src + "."):
            return f"{side}.{dst}{rest[len(src):]}"
    m = re.match(r"middle\.(\d)\.(.*)", rest)
    if m:
        idx, tail = int(m.group(1)), m.group(2)
        if idx == 1:
            return f"{side}.mid_block.attentions.0.{tail}"
        return f"{side}.mid_block.resnets.{idx // 2}.{_res(tail)}"
    m = re.match(r"downsamples\.(\d+)\.(.*)", rest)
    if m:  # diffusers keeps the encoder's flat list
        return f"{side}.down_blocks.{m.group(1)}.{_res(m.group(2))}"
    m = re.match(r"upsamples\.(\d+)\.(.*)", rest)
    if m:  # decoder: per level (num_res_blocks + 1) resnets then one upsampler
        idx, tail = int(m.group(1)), m.group(2)
        per_level = num_res_blocks + 2
        level, within = divmod(idx, per_level)
        if within <= num_res_blocks:
            return f"{side}.up_blocks.{level}.resnets.{within}.{_res(tail)}"
        return f"{side}.up_blocks.{level}.upsamplers.0.{tail}"
    return key


def diffusers_to_wan_vae_key(key: str, num_res_blocks: int = 2) -> str:
    if key.startswith("quant_conv."):
        return "conv1." + key[len("quant_conv."):]
    if key.startswith("post_quant_conv."):
        return "conv2." + key[len("post_quant_conv."):]
    side, _, rest = key.partition(".")
    for src, dst in _HEAD.items():
        if rest.startswith(dst + "."):
            return f"{side}.{src}{rest[len(dst):]}"
    m = re.match(r"mid_block\.attentions\.0\.(.*)", rest)
    if m:
        return f"{side}.middle.1.{m.group(1)}"
    m = re.match(r"mid_block\.resnets\.(\d)\.(.*)", rest)
    if m:
        return f"{side}.middle.{int(m.group(1)) * 2}.{_res(m.group(2), True)}"
    m = re.match(r"down_blocks\.(\d+)\.(.*)", rest)
    if m:
        return f"{side}.downsamples.{m.group(1)}.{_res(m.group(2), True)}"
    per_level = num_res_blocks + 2
    m = re.match(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", rest)
    if m:
        return f"{side}.upsamples.{int(m.group(1)) * per_level + int(m.group(2))}.{_res(m.group(3), True)}"
    m = re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.(.*)", rest)
    if m:
        return f"{side}.upsamples.{int(m.group(1)) * per_level + num_res_blocks + 1}.{m.group(2)}"
    return key


def is_original_wan_vae(keys) -> bool:
    return any(strip_prefix(k).startswith(("decoder.middle.", "decoder.upsamples.")) for k in keys)


# ---- UMT5 encoder --------------------------------------------------------------------------------
# ComfyUI's text-encoder files use the transformers names; the Wan repo's own T5 (and single files converted
# from `models_t5_umt5-xxl-enc-bf16.pth`) use `token_embedding`, `blocks.N.attn.q`, `ffn.fc1`, ….
_T5_BLOCK = [("norm1.weight", "layer.0.layer_norm.weight"), ("attn.q.weight", "layer.0.SelfAttention.q.weight"),
             ("attn.k.weight", "layer.0.SelfAttention.k.weight"), ("attn.v.weight", "layer.0.SelfAttention.v.weight"),
             ("attn.o.weight", "layer.0.SelfAttention.o.weight"),
             ("pos_embedding.embedding.weight", "layer.0.SelfAttention.relative_attention_bias.weight"),
             ("norm2.weight", "layer.1.layer_norm.weight"), ("ffn.gate.0.weight", "layer.1.DenseReluDense.wi_0.weight"),
             ("ffn.fc1.weight", "layer.1.DenseReluDense.wi_1.weight"), ("ffn.fc2.weight", "layer.1.DenseReluDense.wo.weight")]
_T5_TOP = [("token_embedding.weight", "shared.weight"), ("norm.weight", "encoder.final_layer_norm.weight")]


def umt5_to_transformers_key(key: str) -> str:
    for prefix in ("text_encoders.umt5xxl.transformer.", "umt5xxl.transformer.", "transformer."):
        if key.startswith(prefix):
            key = key[len(prefix):]
    for src, dst in _T5_TOP:
        if key == src:
            return dst
    m = re.match(r"blocks\.(\d+)\.(.*)", key)
    if m:
        for src, dst in _T5_BLOCK:
            if m.group(2) == src:
                return f"encoder.block.{m.group(1)}.{dst}"
    return key


def transformers_to_wan_t5_key(key: str) -> str:
    for src, dst in _T5_TOP:
        if key == dst:
            return src
    m = re.match(r"encoder\.block\.(\d+)\.(.*)", key)
    if m:
        for src, dst in _T5_BLOCK:
            if m.group(2) == dst:
                return f"blocks.{m.group(1)}.{src}"
    return key
