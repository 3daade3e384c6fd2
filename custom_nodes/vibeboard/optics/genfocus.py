"""GenFocus learned path (rayray9999/Genfocus, arXiv 2512.16923): FLUX.1-dev + DeblurNet / BokehNet LoRAs.

Mechanism (OminiControl-style multi-condition FLUX, re-implemented on diffusers' FluxTransformer2DModel):
- Token *streams*: the prompt (text), the noisy image, and one stream per condition image. Each condition is
  VAE-encoded and packed like the image, with its own position ids (optionally shifted by `position_delta`
  in (h, w) latent-token units), its own timestep (0 = clean) and guidance 1.
- Every stream runs through every block with its own adaLN modulation; attention is joint: each stream's
  queries see the keys of the streams the group mask allows (conditions see text, image and themselves,
  not each other).
- LoRA is switched **per stream**: the LoRA-wrapped Linears apply adapter A only while computing a stream
  whose adapter is A (GenFocus: conditions use "deblurring"/"bokeh", text and image use none).
- DeblurNet (`deblurNet.safetensors`, upstream Inference_deblurNet.py / demo.py): ONE condition, the blurry
  input at (0, 0); prompt "a sharp photo with everything in focus", guidance 3.5 → all-in-focus image.
- DeblurNet with pre-deblur (`deblurNet_with_pre_deblur.safetensors`, Inference_deblurNet_with_pre_deblur.py): TWO
  conditions, a pre-deblurred image (black when none is given) shifted by (0, 32) tokens, then the blurry input.
- BokehNet: conditions = [all-in-focus image, defocus map in 0..1 fed to the VAE without [-1, 1] scaling],
  prompt "an excellent photo with a large aperture", guidance 1.0. The defocus map comes from the Optics
  Engine (optics/defocus.py: clamp(|K·(1/z − 1/z_f)| / 100, 0, 1)).

Weights: `deblurNet.safetensors` / `bokehNet.safetensors` (HF nycu-cplab/Genfocus-Model) in diffusers/PEFT
LoRA layout, `transformer.<module>.lora_A.weight` / `.lora_B.weight` (optionally `.alpha` or safetensors
metadata `lora_adapter_metadata`). Tiling as upstream: the inference scripts disable it when the shorter side is
under 512 px (`force_no_tile = min(w, h) < 512`); otherwise `generate` denoises overlapping 32×32-token tiles
(stride 28) with every stream on the fixed ids of a 512² image (position_delta is not applied inside tiles) and
Gaussian blending.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

DEBLUR_PROMPT = "a sharp photo with everything in focus"
BOKEH_PROMPT = "an excellent photo with a large aperture"
TILE_TOKENS = 32  # GenFocus: tiles of 32×32 tokens (512² px, the training size), stride 28, Gaussian blend


# --- per-stream LoRA -----------------------------------------------------------------------------
class StreamLoRALinear(nn.Module):
    """nn.Linear + named LoRA adapters; only the adapter named in `state["active"]` contributes."""

    def __init__(self, base: nn.Linear, state: dict):
        super().__init__()
        self.base = base
        self.state = state
        self.lora_down = nn.ModuleDict()
        self.lora_up = nn.ModuleDict()
        self.scale: dict = {}

    @property
    def weight(self):
        return self.base.weight

    @property
    def in_features(self):
        return self.base.in_features

    @property
    def out_features(self):
        return self.base.out_features

    def add_adapter(self, name: str, down: torch.Tensor, up: torch.Tensor, scale: float) -> None:
        d = nn.Linear(down.shape[1], down.shape[0], bias=False)
        u = nn.Linear(up.shape[1], up.shape[0], bias=False)
        d.weight.data.copy_(down)
        u.weight.data.copy_(up)
        self.lora_down[name] = d.to(self.base.weight.device, self.base.weight.dtype)
        self.lora_up[name] = u.to(self.base.weight.device, self.base.weight.dtype)
        self.scale[name] = float(scale)

    def forward(self, x):
        out = self.base(x)
        name = self.state.get("active")
        if name is not None and name in self.lora_down:
            out = out + self.lora_up[name](self.lora_down[name](x)) * self.scale[name]
        return out


def _lora_state(transformer) -> dict:
    if not hasattr(transformer, "_vb_lora_state"):
        transformer._vb_lora_state = {"active": None}
    return transformer._vb_lora_state


@contextlib.contextmanager
def active_adapter(transformer, name: Optional[str]):
    state = _lora_state(transformer)
    previous = state["active"]
    state["active"] = name
    try:
        yield
    finally:
        state["active"] = previous


def parse_lora_state(state: dict, metadata: Optional[dict] = None) -> dict:
    """{module path in the transformer: (down [r, in], up [out, r], scale)} from diffusers/PEFT LoRA keys."""
    alpha_meta = None
    if metadata and "lora_adapter_metadata" in metadata:
        try:
            meta = json.loads(metadata["lora_adapter_metadata"])
            meta = meta.get("transformer", meta) if isinstance(meta, dict) else {}
            alpha_meta = (meta.get("lora_alpha"), meta.get("r"))
        except (ValueError, AttributeError):
            alpha_meta = None
    modules: dict = {}
    for key, value in state.items():
        k = key[len("transformer."):] if key.startswith("transformer.") else key
        for part, slot in ((".lora_A.", 0), (".lora_B.", 1), (".lora_down.", 0), (".lora_up.", 1)):
            if part in k:
                module = k.split(part)[0]
                modules.setdefault(module, [None, None, None])[slot] = value
                break
        else:
            if k.endswith(".alpha"):
                modules.setdefault(k[: -len(".alpha")], [None, None, None])[2] = float(value)
    out = {}
    for module, (down, up, alpha) in modules.items():
        if down is None or up is None:
            raise ValueError(f"LoRA file: module {module} has only one of lora_A / lora_B")
        rank = down.shape[0]
        if alpha is None and alpha_meta and alpha_meta[0]:
            alpha = float(alpha_meta[0])
        out[module] = (down, up, (alpha / rank) if alpha else 1.0)
    if not out:
        raise ValueError("not a LoRA file: no lora_A/lora_B (or lora_down/lora_up) keys")
    return out


def add_lora(transformer, lora: dict, name: str) -> int:
    """Attach one LoRA as adapter `name` (per-stream switchable). Returns the number of wrapped Linears."""
    state = _lora_state(transformer)
    n = 0
    for module_path, (down, up, scale) in lora.items():
        parent_path, _, child = module_path.rpartition(".")
        parent = transformer.get_submodule(parent_path) if parent_path else transformer
        target = getattr(parent, child) if not child.isdigit() else parent[int(child)]
        if isinstance(target, nn.Linear):
            wrapper = StreamLoRALinear(target, state)
            if child.isdigit():
                parent[int(child)] = wrapper
            else:
                setattr(parent, child, wrapper)
            target = wrapper
        if not isinstance(target, StreamLoRALinear):
            raise ValueError(f"LoRA targets {module_path}, which is not a Linear layer")
        if tuple(down.shape) != (down.shape[0], target.in_features) or up.shape[0] != target.out_features:
            raise ValueError(f"LoRA shape mismatch at {module_path}: {tuple(down.shape)} / {tuple(up.shape)}")
        target.add_adapter(name, down, up, scale)
        n += 1
    return n


def load_lora_file(transformer, path: str, name: str) -> int:
    from safetensors import safe_open
    from safetensors.torch import load_file

    if not path.endswith(".safetensors"):
        raise ValueError(f"{path}: only .safetensors LoRA files are read")
    with safe_open(path, framework="pt") as fh:
        metadata = fh.metadata()
    return add_lora(transformer, parse_lora_state(load_file(path), metadata), name)


# --- multi-stream transformer forward --------------------------------------------------------------
@dataclass
class Stream:
    hidden: torch.Tensor           # packed tokens [B, S, C] (image/condition) or text embeddings [B, L, D]
    ids: torch.Tensor              # [S, 3] position ids
    timestep: torch.Tensor         # [B] in 0..1 (×1000 inside, as FLUX)
    guidance: Optional[torch.Tensor]
    pooled: torch.Tensor           # [B, pooled_dim]
    adapter: Optional[str] = None


def _heads(x, head_dim):
    return x.unflatten(-1, (-1, head_dim))


def _joint_attention(attn, qkv: list, rope: list, mask) -> list:
    from diffusers.models.embeddings import apply_rotary_emb

    qs, ks, vs = [], [], []
    for (q, k, v), emb in zip(qkv, rope):
        qs.append(apply_rotary_emb(q, emb, sequence_dim=1).transpose(1, 2))
        ks.append(apply_rotary_emb(k, emb, sequence_dim=1).transpose(1, 2))
        vs.append(v.transpose(1, 2))
    outs = []
    for i, q in enumerate(qs):
        sel = [j for j in range(len(ks)) if mask is None or bool(mask[i][j])]
        o = F.scaled_dot_product_attention(q, torch.cat([ks[j] for j in sel], 2), torch.cat([vs[j] for j in sel], 2))
        outs.append(o.transpose(1, 2).flatten(2, 3).to(q.dtype))
    return outs


def _dual_block(block, transformer, streams_h, tembs, adapters, rope, mask, n_text):
    attn = block.attn
    mods, qkv = [], []
    for i, h in enumerate(streams_h):
        with active_adapter(transformer, adapters[i]):
            if i < n_text:
                normed, *rest = block.norm1_context(h, emb=tembs[i])
                q, k, v = attn.add_q_proj(normed), attn.add_k_proj(normed), attn.add_v_proj(normed)
                q, k = attn.norm_added_q(_heads(q, attn.head_dim)), attn.norm_added_k(_heads(k, attn.head_dim))
            else:
                normed, *rest = block.norm1(h, emb=tembs[i])
                q, k, v = attn.to_q(normed), attn.to_k(normed), attn.to_v(normed)
                q, k = attn.norm_q(_heads(q, attn.head_dim)), attn.norm_k(_heads(k, attn.head_dim))
        mods.append(rest)
        qkv.append((q, k, _heads(v, attn.head_dim)))
    outs = _joint_attention(attn, qkv, rope, mask)
    new = []
    for i, h in enumerate(streams_h):
        gate_msa, shift_mlp, scale_mlp, gate_mlp = mods[i]
        with active_adapter(transformer, adapters[i]):
            if i < n_text:
                h = h + gate_msa.unsqueeze(1) * attn.to_add_out(outs[i])
                n = block.norm2_context(h) * (1 + scale_mlp[:, None]) + shift_mlp[:, None]
                h = h + gate_mlp.unsqueeze(1) * block.ff_context(n)
            else:
                h = h + gate_msa.unsqueeze(1) * attn.to_out[0](outs[i])
                n = block.norm2(h) * (1 + scale_mlp[:, None]) + shift_mlp[:, None]
                h = h + gate_mlp.unsqueeze(1) * block.ff(n)
        new.append(h.clip(-65504, 65504) if h.dtype == torch.float16 else h)
    return new


def _single_block(block, transformer, streams_h, tembs, adapters, rope, mask):
    attn = block.attn
    gates, mlps, qkv = [], [], []
    for i, h in enumerate(streams_h):
        with active_adapter(transformer, adapters[i]):
            n, gate = block.norm(h, emb=tembs[i])
            mlps.append(block.act_mlp(block.proj_mlp(n)))
            q, k, v = attn.to_q(n), attn.to_k(n), attn.to_v(n)
        gates.append(gate)
        qkv.append((attn.norm_q(_heads(q, attn.head_dim)), attn.norm_k(_heads(k, attn.head_dim)),
                    _heads(v, attn.head_dim)))
    outs = _joint_attention(attn, qkv, rope, mask)
    new = []
    for i, h in enumerate(streams_h):
        with active_adapter(transformer, adapters[i]):
            h = h + gates[i].unsqueeze(1) * block.proj_out(torch.cat([outs[i], mlps[i]], dim=2))
        new.append(h.clip(-65504, 65504) if h.dtype == torch.float16 else h)
    return new


def multi_stream_forward(transformer, text: Stream, image: Stream, conditions: list, group_mask=None):
    """FLUX forward over [text, image, *conditions] streams; returns the image stream's prediction."""
    streams = [text, image, *conditions]
    adapters = [s.adapter for s in streams]
    if group_mask is None:
        group_mask = condition_group_mask(len(conditions))
    hs = []
    for i, s in enumerate(streams):
        with active_adapter(transformer, adapters[i]):
            hs.append(transformer.context_embedder(s.hidden) if i == 0 else transformer.x_embedder(s.hidden))
    dtype = hs[1].dtype
    tembs = []
    for s in streams:
        t = s.timestep.to(dtype) * 1000
        if s.guidance is not None and transformer.config.guidance_embeds:
            tembs.append(transformer.time_text_embed(t, s.guidance.to(dtype) * 1000, s.pooled))
        else:
            tembs.append(transformer.time_text_embed(t, s.pooled))
    rope = [transformer.pos_embed(s.ids) for s in streams]
    for block in transformer.transformer_blocks:
        hs = _dual_block(block, transformer, hs, tembs, adapters, rope, group_mask, n_text=1)
    for block in transformer.single_transformer_blocks:
        hs = _single_block(block, transformer, hs, tembs, adapters, rope, group_mask)
    out = transformer.norm_out(hs[1], tembs[1])
    return transformer.proj_out(out)


def condition_group_mask(n_conditions: int) -> torch.Tensor:
    """GenFocus/OminiControl: text and image see everything; each condition sees text, image and itself."""
    n = n_conditions + 2
    mask = torch.ones(n, n, dtype=torch.bool)
    mask[2:, 2:] = torch.eye(n_conditions, dtype=torch.bool)
    return mask


# --- pipeline pieces ---------------------------------------------------------------------------------
def pack_latents(z: torch.Tensor) -> torch.Tensor:
    b, c, h, w = z.shape
    return z.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)


def unpack_latents(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    b, _, c4 = x.shape
    return x.view(b, h // 2, w // 2, c4 // 4, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c4 // 4, h, w)


def latent_ids(h2: int, w2: int, delta=(0, 0), device=None) -> torch.Tensor:
    """[h2·w2, 3] ids (0, row + dh, col + dw) on the packed-token grid."""
    ids = torch.zeros(h2, w2, 3, device=device)
    ids[..., 1] = torch.arange(h2, device=device)[:, None] + delta[0]
    ids[..., 2] = torch.arange(w2, device=device)[None, :] + delta[1]
    return ids.reshape(-1, 3)


@torch.no_grad()
def encode_condition(vae, image: torch.Tensor, generator=None, raw: bool = False):
    """IMAGE [1, H, W, 3] 0..1 → packed tokens. raw=True feeds 0..1 unscaled (GenFocus' defocus map)."""
    x = image.permute(0, 3, 1, 2).to(vae.device, vae.dtype)
    if not raw:
        x = x * 2 - 1
    z = vae.encode(x).latent_dist.sample(generator)
    z = (z - vae.config.shift_factor) * vae.config.scaling_factor
    return pack_latents(z), z.shape[2:]


def flux_sigmas(steps: int, image_seq_len: int, scheduler_config: dict) -> tuple:
    """FluxPipeline's schedule: linspace(1, 1/n, n) with the resolution-dependent shift mu."""
    import numpy as np
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    sig = np.linspace(1.0, 1 / steps, steps)
    mu = calculate_shift(image_seq_len, scheduler_config.get("base_image_seq_len", 256),
                         scheduler_config.get("max_image_seq_len", 4096), scheduler_config.get("base_shift", 0.5),
                         scheduler_config.get("max_shift", 1.15))
    shifted = math.exp(mu) / (math.exp(mu) + (1 / torch.tensor(sig, dtype=torch.float64) - 1))
    return torch.cat([shifted, torch.zeros(1, dtype=torch.float64)]).float()


@torch.no_grad()
def generate(transformer, vae, prompt_embeds, pooled, text_ids, height: int, width: int, conditions: list,
             adapter: Optional[str], steps: int = 28, guidance: float = 3.5, seed: int = 0,
             scheduler_config: Optional[dict] = None, progress=None, tile: int = TILE_TOKENS) -> torch.Tensor:
    """conditions: [(IMAGE [1,H,W,3], position_delta (dh, dw), raw)] all with `adapter`. Returns IMAGE.
    Token grids of tile² tokens or more are denoised in overlapping tiles like GenFocus (tile=0: never)."""
    device, dtype = transformer.device, transformer.dtype
    gen = torch.Generator("cpu").manual_seed(int(seed))
    lh, lw = 2 * (height // 16), 2 * (width // 16)
    latents = pack_latents(torch.randn(1, transformer.config.in_channels // 4, lh, lw, generator=gen)).to(device, dtype)
    img_ids = latent_ids(lh // 2, lw // 2, device=device)
    cond_streams = []
    for image, delta, raw in conditions:
        image = F.interpolate(image.permute(0, 3, 1, 2), size=(height, width), mode="bilinear",
                              align_corners=False).permute(0, 2, 3, 1)
        tokens, (ch, cw) = encode_condition(vae, image, gen, raw)
        cond_streams.append(Stream(tokens.to(dtype), latent_ids(ch // 2, cw // 2, delta, device),
                                   torch.zeros(1, device=device), torch.ones(1, device=device),
                                   pooled, adapter))
    sig = flux_sigmas(steps, latents.shape[1], scheduler_config or {})
    g = torch.full((1,), float(guidance), device=device)
    mask = condition_group_mask(len(cond_streams))
    h2, w2 = lh // 2, lw // 2
    tiles = tile_layout(h2, w2, tile) if uses_tiles(h2, w2, tile) else None
    for i in range(steps):
        if progress is not None:
            progress.update(1)
        t = torch.full((1,), float(sig[i]), device=device)
        text = Stream(prompt_embeds, text_ids, t, g, pooled, None)
        if tiles is None:
            image = Stream(latents, img_ids, t, g, pooled, None)
            v = multi_stream_forward(transformer, text, image, cond_streams, mask)
        else:
            v = _tiled_velocity(transformer, text, latents, cond_streams, mask, tiles, t, g, pooled, h2, w2)
        latents = (latents.float() + (sig[i + 1] - sig[i]) * v.float()).to(dtype)
    z = unpack_latents(latents, lh, lw) / vae.config.scaling_factor + vae.config.shift_factor
    out = vae.decode(z.to(vae.dtype)).sample
    return ((out.float() + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).cpu()


def uses_tiles(h2: int, w2: int, tile: int = TILE_TOKENS) -> bool:
    """Upstream tiles only when the shorter side is ≥ 512 px, i.e. ≥ `tile` packed tokens (tile=0: never)."""
    return bool(tile) and min(h2, w2) >= tile


def tile_layout(h2: int, w2: int, tile: int = TILE_TOKENS) -> tuple:
    """(tile_h, tile_w, [(row, col) origins]) covering an h2×w2 token grid with GenFocus' overlap (tile/8)."""
    th, tw = min(tile, h2), min(tile, w2)
    stride = tile - tile // 8

    def starts(n, t):
        out = list(range(0, max(1, n - t + 1), stride))
        if out[-1] + t < n:
            out.append(n - t)
        return out

    return th, tw, [(r, c) for c in starts(w2, tw) for r in starts(h2, th)]


def _tiled_velocity(transformer, text, latents, cond_streams, mask, tiles, t, g, pooled, h2, w2):
    """GenFocus' tiled denoising: every tile uses the fixed ids of a tile-sized image (conditions too) and the
    predictions are blended with Gaussian weights."""
    th, tw, origins = tiles
    grid = torch.arange(h2 * w2, device=latents.device).view(h2, w2)
    ids = latent_ids(th, tw, device=latents.device)
    ramp_h = torch.linspace(-2, 2, th, device=latents.device)
    ramp_w = torch.linspace(-2, 2, tw, device=latents.device)
    weight = torch.exp(-(ramp_h[:, None] ** 2 + ramp_w[None] ** 2)).reshape(-1).to(latents.dtype)
    acc = torch.zeros_like(latents, dtype=torch.float32)
    wacc = torch.zeros(latents.shape[:2], device=latents.device)
    for r, c in origins:
        idx = grid[r:r + th, c:c + tw].reshape(-1)
        conds = [Stream(s.hidden[:, idx], ids, s.timestep, s.guidance, s.pooled, s.adapter) for s in cond_streams]
        image = Stream(latents[:, idx], ids, t, g, pooled, None)
        v = multi_stream_forward(transformer, text, image, conds, mask)
        acc[:, idx] += v.float() * weight[None, :, None]
        wacc[:, idx] += weight
    return acc / wacc[..., None]


DEBLUR_PLAIN = "deblurNet"
DEBLUR_WITH_PRE = "deblurNet_with_pre_deblur"


def deblur_variant(lora_file: str) -> str:
    """Which DeblurNet a LoRA file is, by its published name (the weights have the same layout)."""
    return DEBLUR_WITH_PRE if "pre_deblur" in os.path.basename(lora_file or "").lower() else DEBLUR_PLAIN


def deblur_conditions(blurry: torch.Tensor, variant: str = DEBLUR_PLAIN,
                      pre_deblur: Optional[torch.Tensor] = None) -> list:
    """deblurNet: the blurry input alone. deblurNet_with_pre_deblur: the pre-deblurred image (black when none)
    shifted 32 tokens right, then the blurry input."""
    if variant == DEBLUR_PLAIN:
        if pre_deblur is not None:
            raise ValueError("a pre-deblurred image is only read by deblurNet_with_pre_deblur.safetensors; "
                             "the plain deblurNet takes the blurry image alone")
        return [(blurry, (0, 0), False)]
    if variant != DEBLUR_WITH_PRE:
        raise ValueError(f"unknown DeblurNet variant {variant!r}")
    pre = torch.zeros_like(blurry) if pre_deblur is None else pre_deblur[:1].to(blurry)
    return [(pre, (0, 32), False), (blurry, (0, 0), False)]


def bokeh_conditions(all_in_focus: torch.Tensor, defocus: torch.Tensor) -> list:
    """BokehNet's conditions: the all-in-focus image and the defocus map (3 channels, 0..1, unscaled)."""
    d = defocus if defocus.dim() == 4 else defocus[..., None]
    if d.shape[-1] == 1:
        d = d.repeat(1, 1, 1, 3)
    return [(all_in_focus, (0, 0), False), (d.clamp(0, 1), (0, 0), True)]
