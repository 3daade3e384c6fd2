"""Loaders for the layouts artists have: diffusers folders and ComfyUI single files (original Wan key names).

Everything is safetensors. Single files are built on the meta device and filled by `assign`, so a 14B model
is never randomly initialised first. The config is read from tensor shapes (ComfyUI files carry no config).
"""
from __future__ import annotations

import fnmatch
import json
import math
import os
import re
from typing import Optional

import torch

from ..common import runtime
from ..common.paths import PathEscapeError
from . import wan_keys

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32,
          "fp8_e4m3fn": torch.bfloat16, "fp8_e5m2": torch.bfloat16}
FP8 = {"fp8_e4m3fn": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}
# diffusers keeps these in fp32 when loading Wan in half precision; we do the same so both layouts agree.
WAN_KEEP_FP32 = ("time_embedder", "scale_shift_table", "norm1", "norm2", "norm3")


class ModelFileError(FileNotFoundError):
    pass


def model_path(node: str, input_name: str, value: str, must_be_dir: bool = False, folder: str = "checkpoints",
               class_type: Optional[str] = None, prompt: Optional[dict] = None, node_id: Optional[str] = None) -> str:
    """The pack's one resolver for model paths typed into nodes: a name inside its registry folder (ours,
    ComfyUI's, extra_model_paths.yaml; the folder may be written in front, e.g. 'diffusers/FLUX.1-dev'), a path
    relative to the models root, or an absolute path. When it is missing, the error names the expected path and the
    pull command and, given the workflow (`prompt`, with `class_type`), every other missing model file too."""
    from ..common import runtime
    from . import preflight, registry

    value = (value or "").strip()
    if not value:
        raise runtime.NodeInputError(node, input_name, "empty path")
    if os.path.isabs(os.path.expanduser(value)):
        runtime.user_path(node, input_name, value, runtime.models_directory())  # the server's path policy
    try:
        path = registry.resolve(os.path.expanduser(value), folder)
    except ValueError as exc:
        raise runtime.NodeInputError(node, input_name, str(exc)) from None
    ok = path is not None and (os.path.isdir(path) if must_be_dir else os.path.exists(path))
    if not ok:
        if class_type:
            preflight.raise_missing(class_type, input_name, value, prompt, node_id, title=node)
        raise runtime.NodeInputError(node, input_name,
                                     f"model not found: expected {'folder' if must_be_dir else 'file'} "
                                     f"{registry.expected_location(value, folder)}{registry.pull_hint(value)}")
    return path


def pick_device(choice: str = "auto") -> str:
    if choice != "auto":
        return choice
    return "cuda" if torch.cuda.is_available() else "cpu"


def compute_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; choose one of {sorted(DTYPES)}")
    return DTYPES[name]


def unquantized_dtype(name: str) -> torch.dtype:
    """The dtype a part without fp8 support (VAE, UMT5, CLIP vision) holds its weights in: an fp8 choice means
    bf16 for it."""
    return compute_dtype(name if name not in FP8 else "bf16")


def read_safetensors(path: str, device: str = "cpu") -> dict:
    if not os.path.isfile(path):
        raise ModelFileError(f"model file not found: {path}")
    if not path.endswith((".safetensors", ".sft")):
        raise ValueError(f"{path}: only .safetensors files are loaded (pickled checkpoints are unsafe)")
    from safetensors.torch import load_file
    return load_file(path, device=device)


def read_diffusers_folder(folder: str) -> dict:
    """All tensors of a diffusers component folder (single file or sharded with an index)."""
    names = find_files(folder, "*.safetensors")
    if not names:
        raise ModelFileError(f"no .safetensors weights in {folder}")
    index = [n for n in find_files(folder, "*.safetensors.index.json")]
    if index:
        index_path = os.path.join(folder, index[0])
        try:
            with open(index_path, encoding="utf-8") as f:
                names = sorted(set(json.load(f)["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ModelFileError(f"cannot read the shard index {index_path}: {type(exc).__name__}: {exc}") from None
    state = {}
    for name in names:  # shard names come from the index file's content: confine them like typed paths
        try:
            path = runtime.content_path(folder, name, "shard")
        except PathEscapeError as exc:
            raise ModelFileError(str(exc)) from None
        state.update(read_safetensors(path))
    return state


def dequantize_scaled(state: dict, dtype: torch.dtype) -> dict:
    """ComfyUI `*_fp8_scaled` files (fp8 weight + per-tensor `scale_weight`/`weight_scale`) and plain fp8 files.

    fp8 tensors become `dtype` one at a time (a 14B fp8 file never exists in fp32 in RAM).
    """
    out = {}
    for key in list(state):
        value = state[key]
        if key == "scaled_fp8" or key.endswith((".scale_input", ".input_scale", ".comfy_quant",
                                                ".scale_weight", ".weight_scale")):
            continue
        if value.dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
            base = key[:-len("weight")] if key.endswith(".weight") else None
            scale = None if base is None else state.get(base + "scale_weight", state.get(base + "weight_scale"))
            value = value.to(dtype)
            if scale is not None:
                value = (value.float() * scale.float()).to(dtype) if dtype != torch.float32 else value * scale.float()
        out[key] = value
    return out


def _cast(model: torch.nn.Module, dtype: torch.dtype, keep_fp32=()) -> torch.nn.Module:
    for name, param in model.named_parameters():
        want = torch.float32 if any(k in name.split(".") for k in keep_fp32) else dtype
        if param.dtype != want and param.is_floating_point():
            param.data = param.data.to(want)
    return model


def _assign(model: torch.nn.Module, state: dict, strict: bool = True) -> torch.nn.Module:
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if strict and (missing or unexpected):
        raise ValueError(f"checkpoint does not match {type(model).__name__}: "
                         f"missing {missing[:6]}{'…' if len(missing) > 6 else ''}, "
                         f"unexpected {unexpected[:6]}{'…' if len(unexpected) > 6 else ''}")
    return model


# ---- Wan transformer ----------------------------------------------------------------------------
def infer_wan_config(state: dict) -> dict:
    """WanTransformer3DModel / WanVACETransformer3DModel config from diffusers-named tensor shapes."""
    pe = state["patch_embedding.weight"]
    dim, in_channels, patch = pe.shape[0], pe.shape[1], tuple(pe.shape[2:])
    # Every published Wan uses 128-dim heads; tiny test models use 16.
    head_dim = 128 if dim % 128 == 0 else 16
    num_layers = 1 + max(int(m.group(1)) for k in state for m in [re.match(r"blocks\.(\d+)\.", k)] if m)
    cfg = dict(patch_size=patch, num_attention_heads=dim // head_dim, attention_head_dim=head_dim,
               in_channels=in_channels, out_channels=state["proj_out.weight"].shape[0] // math.prod(patch),
               text_dim=state["condition_embedder.text_embedder.linear_1.weight"].shape[1],
               freq_dim=state["condition_embedder.time_embedder.linear_1.weight"].shape[1],
               ffn_dim=state["blocks.0.ffn.net.0.proj.weight"].shape[0], num_layers=num_layers,
               cross_attn_norm="blocks.0.norm2.weight" in state,
               qk_norm="rms_norm_across_heads" if "blocks.0.attn1.norm_q.weight" in state else None,
               eps=1e-6, rope_max_seq_len=1024)
    if "condition_embedder.image_embedder.norm1.weight" in state:
        cfg["image_dim"] = state["condition_embedder.image_embedder.norm1.weight"].shape[0]
        cfg["added_kv_proj_dim"] = dim
        if "condition_embedder.image_embedder.pos_embed" in state:
            cfg["pos_embed_seq_len"] = state["condition_embedder.image_embedder.pos_embed"].shape[1]
    if "vace_patch_embedding.weight" in state:
        n_vace = 1 + max(int(m.group(1)) for k in state for m in [re.match(r"vace_blocks\.(\d+)\.", k)] if m)
        step = max(1, num_layers // n_vace)  # 1.3B: every 2nd of 30 layers; 14B: every 5th of 40
        cfg["vace_layers"] = list(range(0, num_layers, step))[:n_vace]
        cfg["vace_in_channels"] = state["vace_patch_embedding.weight"].shape[1]
    return cfg


def wan_variant(cfg: dict) -> str:
    if "vace_layers" in cfg:
        return "vace"
    if cfg["in_channels"] == 36:
        return "i2v"
    if cfg["in_channels"] == 48:
        return "ti2v"
    return "t2v"


def build_wan_from_state(state: dict, dtype: torch.dtype = torch.bfloat16):
    from diffusers import WanTransformer3DModel, WanVACETransformer3DModel
    from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed
    cfg = infer_wan_config(state)
    cls = WanVACETransformer3DModel if "vace_layers" in cfg else WanTransformer3DModel
    with torch.device("meta"):
        model = cls(**cfg)
    _assign(model, state)
    # The rotary table is a non-persistent buffer: rebuild it for real after the meta construction.
    model.rope = WanRotaryPosEmbed(cfg["attention_head_dim"], cfg["patch_size"], cfg["rope_max_seq_len"])
    return _cast(model, dtype, WAN_KEEP_FP32).eval()


def load_wan_transformer(path: str, dtype: str = "bf16", device: str = "cpu"):
    """A Wan DiT from a ComfyUI single file, a diffusers `transformer/` folder, or a whole diffusers repo.

    `device` (single files): read the tensors straight onto it (no host copy, fp8 dequantised there, once)."""
    cdtype = compute_dtype(dtype)
    if os.path.isdir(path):
        folder = os.path.join(path, "transformer") if os.path.isdir(os.path.join(path, "transformer")) else path
        model = build_wan_from_state(read_diffusers_folder(folder), cdtype)
    else:
        state = read_safetensors(path, device)
        kept = _scaled_fp8_weights(state) if dtype == "fp8_e4m3fn" else {}
        raw = dequantize_scaled(state, cdtype)
        rename = wan_keys.wan_to_diffusers_key if wan_keys.is_original_wan(raw.keys()) else \
            (lambda k: k[len("transformer."):] if k.startswith("transformer.") else k)
        raw = {rename(k): v for k, v in raw.items()}
        kept = {rename(k): v for k, v in kept.items()}
        model = build_wan_from_state(raw, cdtype).to(device)  # .to: the rebuilt rotary table
    if dtype in FP8:
        from .fp8 import convert_linears_to_fp8
        convert_linears_to_fp8(model, FP8[dtype], skip=("condition_embedder", "proj_out", "patch_embedding"))
        _restore_fp8_weights(model, kept if not os.path.isdir(path) else {})
    return model


def _scaled_fp8_weights(state: dict) -> dict:
    """{weight key: (e4m3 weight, per-tensor scale)} of a ComfyUI fp8-scaled file, kept as published: loading such a
    file with dtype fp8_e4m3fn then stores exactly these weights, not a second rounding of their dequantised
    values (and the sampler's fp8 GEMMs use them as they are)."""
    out = {}
    for key, value in state.items():
        if key.endswith(".weight") and value.dtype == torch.float8_e4m3fn:
            base = key[:-len("weight")]
            scale = state.get(base + "scale_weight", state.get(base + "weight_scale"))
            if scale is not None and scale.numel() == 1:
                out[key] = (value, scale.float().reshape(1))
    return out


def _restore_fp8_weights(model: torch.nn.Module, kept: dict) -> None:
    from .fp8 import Fp8Linear
    for name, module in model.named_modules():
        got = kept.get(name + ".weight")
        if isinstance(module, Fp8Linear) and got is not None and module.weight.dtype == got[0].dtype:
            module.weight.data = got[0].to(module.weight.device)
            module.scale_weight.copy_(got[1].to(module.scale_weight.device))


# ---- Wan VAE ------------------------------------------------------------------------------------
def load_wan_vae(path: str, dtype: str = "bf16", device: str = "cpu"):
    from diffusers import AutoencoderKLWan
    cdtype = unquantized_dtype(dtype)
    if not os.path.isdir(path) and os.path.isfile(os.path.join(os.path.dirname(path), "config.json")):
        path = os.path.dirname(path)  # diffusers vae/ weights picked by file (the Wan2.2 VAE registry entry)
    if os.path.isdir(path):
        folder = os.path.join(path, "vae") if os.path.isdir(os.path.join(path, "vae")) else path
        with open(os.path.join(folder, "config.json")) as f:
            cfg = {k: v for k, v in json.load(f).items() if not k.startswith("_")}
        with torch.device("meta"):
            vae = AutoencoderKLWan(**cfg)
        return _cast(_assign(vae, read_diffusers_folder(folder)), cdtype).eval()
    raw = read_safetensors(path, device)
    if not wan_keys.is_original_wan_vae(raw.keys()):
        state = raw
    else:
        state = {wan_keys.wan_vae_to_diffusers_key(k, 2): v for k, v in raw.items()}  # Wan2.1: 2 res blocks
    if "decoder.up_blocks.0.upsamplers.0.resample.1.weight" not in state:
        raise ValueError(f"{path}: not a Wan2.1 VAE (the Wan2.2 48-channel VAE loads from a diffusers folder)")
    cfg = dict(base_dim=state["encoder.conv_in.weight"].shape[0],
               z_dim=state["post_quant_conv.weight"].shape[0])
    with torch.device("meta"):
        vae = AutoencoderKLWan(**cfg)
    _assign(vae, state)
    return _cast(vae, cdtype).to(device).eval()


# ---- UMT5 text encoder --------------------------------------------------------------------------
def umt5_config(shapes: dict):
    """The UMT5 encoder config a checkpoint's tensor shapes imply ({transformers key: shape}; ComfyUI's single
    files carry no config). Used by the loader and by the loader's warm-up, which reads shapes from the header."""
    from transformers import UMT5Config
    shared = shapes["shared.weight"]
    q = shapes["encoder.block.0.layer.0.SelfAttention.q.weight"]
    rel = shapes["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
    heads = rel[1]
    return UMT5Config(vocab_size=shared[0], d_model=shared[1], d_kv=q[0] // heads,
                      d_ff=shapes["encoder.block.0.layer.1.DenseReluDense.wi_0.weight"][0],
                      num_layers=1 + max(int(m.group(1)) for k in shapes
                                         for m in [re.match(r"encoder\.block\.(\d+)\.", k)] if m),
                      num_heads=heads, relative_attention_num_buckets=rel[0],
                      relative_attention_max_distance=128 if shared[1] >= 512 else 16,
                      feed_forward_proj="gated-gelu", is_encoder_decoder=False)


def umt5_file_config(path: str):
    """`umt5_config` from a single file's header alone (no tensor data read), or None (folder, other layout)."""
    if os.path.isdir(path) or not path.endswith(".safetensors"):
        return None
    from safetensors import safe_open
    with safe_open(path, framework="pt") as f:
        shapes = {wan_keys.umt5_to_transformers_key(k): tuple(f.get_slice(k).get_shape())
                  for k in f.keys() if k != "spiece_model"}
    try:
        return umt5_config(shapes)
    except (KeyError, ValueError):
        return None


def load_umt5(path: str, dtype: str = "bf16", device: str = "cpu"):
    from transformers import UMT5EncoderModel
    cdtype = unquantized_dtype(dtype)
    if os.path.isdir(path):
        folder = os.path.join(path, "text_encoder") if os.path.isdir(os.path.join(path, "text_encoder")) else path
        model = UMT5EncoderModel.from_pretrained(folder, dtype=cdtype, use_safetensors=True).eval()
        model.set_input_embeddings(model.get_input_embeddings())  # encoder.embed_tokens is `shared`, always
        return model
    state = {wan_keys.umt5_to_transformers_key(k): v
             for k, v in dequantize_scaled(read_safetensors(path, device), cdtype).items()
             if k != "spiece_model"}  # the embedded tokenizer (tokenizer_from_checkpoint), not a weight
    cfg = umt5_config({k: tuple(v.shape) for k, v in state.items()})
    shared = state["shared.weight"]
    state.setdefault("encoder.embed_tokens.weight", shared)
    with torch.device("meta"):
        model = UMT5EncoderModel(cfg)
    _assign(model, state)
    model.tie_weights() if hasattr(model, "tie_weights") else None
    return _cast(model, cdtype).to(device).eval()


def tokenizer_from_checkpoint(path: str):
    """The UMT5 tokenizer a text-encoder file carries (ComfyUI's `spiece_model` uint8 tensor: the SentencePiece
    model bytes), or None when it carries none."""
    if not path.endswith(".safetensors"):
        return None
    from safetensors import safe_open
    with safe_open(path, framework="pt") as f:
        if "spiece_model" not in f.keys():
            return None
        proto = f.get_tensor("spiece_model")
    from .spiece import SentencePieceTokenizer
    return SentencePieceTokenizer(bytes(proto.to(torch.uint8).numpy().tobytes()))


def load_tokenizer(path: str):
    from transformers import AutoTokenizer
    folder = os.path.join(path, "tokenizer") if os.path.isdir(os.path.join(path, "tokenizer")) else path
    if not os.path.isdir(folder):
        raise ModelFileError(f"tokenizer folder not found: {folder}")
    return AutoTokenizer.from_pretrained(folder)


# ---- CLIP vision (Wan I2V image tokens) -----------------------------------------------------------
_CLIP_HEADS = {1280: 16, 1024: 16, 768: 12}


def load_clip_vision(path: str, dtype: str = "fp16"):
    from transformers import CLIPVisionConfig, CLIPVisionModel
    cdtype = unquantized_dtype(dtype)
    if os.path.isdir(path):
        folder = os.path.join(path, "image_encoder") if os.path.isdir(os.path.join(path, "image_encoder")) else path
        return CLIPVisionModel.from_pretrained(folder, dtype=cdtype, use_safetensors=True).eval()
    state = read_safetensors(path)
    state = {k[len("clip_vision."):] if k.startswith("clip_vision.") else k: v for k, v in state.items()}
    state = {k: v for k, v in state.items() if k.startswith("vision_model.")}
    patch = state["vision_model.embeddings.patch_embedding.weight"]
    hidden, patch_size = patch.shape[0], patch.shape[-1]
    n_pos = state["vision_model.embeddings.position_embedding.weight"].shape[0]
    cfg = CLIPVisionConfig(hidden_size=hidden, patch_size=patch_size,
                           image_size=int(round(math.sqrt(n_pos - 1))) * patch_size,
                           intermediate_size=state["vision_model.encoder.layers.0.mlp.fc1.weight"].shape[0],
                           num_hidden_layers=1 + max(int(m.group(1)) for k in state for m in
                                                     [re.match(r"vision_model\.encoder\.layers\.(\d+)\.", k)] if m),
                           num_attention_heads=_CLIP_HEADS.get(hidden, max(1, hidden // 8)),
                           hidden_act="gelu" if hidden >= 1024 else "quick_gelu")
    model = CLIPVisionModel(cfg) if hidden < 256 else None
    if model is None:
        with torch.device("meta"):
            model = CLIPVisionModel(cfg)
        emb = model.vision_model.embeddings
        emb.register_buffer("position_ids", torch.arange(n_pos).unsqueeze(0), persistent=False)
    # transformers 5 names the vision tower without the `vision_model.` prefix the files carry.
    bare = not any(k.startswith("vision_model.") for k in model.state_dict())
    _assign(model, {(k[len("vision_model."):] if bare else k): v for k, v in state.items()
                    if "position_ids" not in k})
    return _cast(model, cdtype).eval()


def find_files(folder: str, pattern: str) -> list:
    if not os.path.isdir(folder):
        return []
    return sorted(n for n in os.listdir(folder) if fnmatch.fnmatch(n, pattern))
