"""FlashPortrait (Francis-Rings/FlashPortrait, Apache-2.0): Wan2.1-I2V-14B driven by a video of expressions.

Published files (`checkpoints/FlashPortrait/`), read here without unpickling anything but tensors:
- `transformer.pt` (or `.safetensors`): the whole Wan I2V DiT in Wan's original key names, possibly nested under
  `state_dict`, plus per block `blocks.N.cross_attn.emo_k_proj.weight` / `emo_v_proj.weight` ([dim, 2048], no bias);
- `portrait_encoder.pt`: `proj_model.*` (head-pose/eye/emotion/mouth linears + LayerNorm → 4 tokens),
  `mouth_proj_model.*` (Resampler, 16 queries from the 512-d mouth feature), `emo_proj_model.*` (Resampler, 4 queries
  from the 30-d emotion feature) → 24 tokens of 2048 per driving frame;
- `pd_fpg.pth`: the PD-FGC motion encoder (FAN hourglass + heads: pose 6, eye 6, emotion 30, mouth 500);
- `face_det.onnx`, `face_landmark.onnx`: face boxes and 222-point landmarks (run with onnxruntime).

The model adapter: in every block's cross-attention, each latent frame's queries attend to that frame's expression
tokens; the result is rescaled to the main branch's statistics (the "normalised facial expression block")
`emo = (emo − mean(emo))·std(x)/(std(emo)+1e-5) + mean(x)` and added as `x + scale·emo` before the output
projection. `patch_expression_attention` installs it on a *copy* of a diffusers `WanTransformer3DModel`.
"""
from __future__ import annotations

import contextlib
import os
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

TOKENS_PER_FRAME = 24     # 4 (pose/eye/emotion/mouth linears) + 16 (mouth resampler) + 4 (emotion resampler)
EMO_DIM = 2048
FEATURE_SPLIT = (6, 6, 30, 512)  # head pose, eye, emotion, mouth — the driving feature per frame (554-d)
FILES = ("transformer.pt", "portrait_encoder.pt", "pd_fpg.pth", "face_det.onnx", "face_landmark.onnx")


class FlashPortraitError(ValueError):
    pass


def torch_tensors(path: str) -> Dict[str, torch.Tensor]:
    """A tensor dict from .safetensors or a PyTorch pickle read with `weights_only=True` (tensors and plain
    containers only; a file that needs arbitrary code is refused by torch, never executed)."""
    if path.endswith((".safetensors", ".sft")):
        from safetensors.torch import load_file
        state = load_file(path)
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # pickle.UnpicklingError for anything that is not plain tensors
            raise FlashPortraitError(f"{path}: not a plain tensor checkpoint ({type(e).__name__}: "
                                     f"{str(e).splitlines()[0][:200]}); only weights are loaded") from e
    for key in ("state_dict", "module", "model"):  # training wrappers nest the weights one level down
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise FlashPortraitError(f"{path}: expected a dict of tensors")
    return state


# ---- transformer.pt ---------------------------------------------------------------------------------------------
def split_transformer_state(state: dict) -> Tuple[dict, dict]:
    """(Wan DiT state in diffusers names, {block index: {"k", "v"}} expression projections)."""
    from ..models import wan_keys
    base, emo = {}, {}
    for key, value in state.items():
        bare = wan_keys.strip_prefix(key)
        if ".cross_attn.emo_" in bare:
            block = int(bare.split(".")[1])
            emo.setdefault(block, {})["k" if "emo_k_proj" in bare else "v"] = value
        else:
            base[key] = value
    if not emo:
        raise FlashPortraitError("transformer checkpoint has no cross_attn.emo_k_proj/emo_v_proj weights: "
                                 "this is a plain Wan I2V DiT, not FlashPortrait's")
    if wan_keys.is_original_wan(base):
        base = wan_keys.convert_wan_transformer(base)
    return base, emo


def load_transformer(path: str, dtype=torch.bfloat16):
    """(diffusers WanTransformer3DModel, expression projections) from `transformer.pt`."""
    from ..models import loaders
    base, emo = split_transformer_state(torch_tensors(path))
    model = loaders.build_wan_from_state(base, dtype)
    return model, emo


# ---- portrait_encoder.pt -----------------------------------------------------------------------------------------
class PerceiverAttention(nn.Module):
    """Latent queries attend to [inputs, latents] (IP-Adapter Resampler layer; parameter names as published)."""

    def __init__(self, dim: int, dim_head: int, heads: int):
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, heads * dim_head, bias=False)
        self.to_kv = nn.Linear(dim, heads * dim_head * 2, bias=False)
        self.to_out = nn.Linear(heads * dim_head, dim, bias=False)

    def forward(self, x, latents):
        x, latents = self.norm1(x), self.norm2(latents)
        b, n, _ = latents.shape
        q = self.to_q(latents)
        k, v = self.to_kv(torch.cat([x, latents], 1)).chunk(2, -1)
        q, k, v = (t.view(b, -1, self.heads, self.dim_head).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class Resampler(nn.Module):
    def __init__(self, dim=1280, depth=4, dim_head=64, heads=20, num_queries=16, embedding_dim=512,
                 output_dim=2048, ff_mult=4):
        super().__init__()
        self.latents = nn.Parameter(torch.randn(1, num_queries, dim) / dim ** 0.5)
        self.proj_in = nn.Linear(embedding_dim, dim)
        self.proj_out = nn.Linear(dim, output_dim)
        self.norm_out = nn.LayerNorm(output_dim)
        self.layers = nn.ModuleList(nn.ModuleList([
            PerceiverAttention(dim, dim_head, heads),
            nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim * ff_mult, bias=False), nn.GELU(),
                          nn.Linear(dim * ff_mult, dim, bias=False))]) for _ in range(depth))

    def forward(self, x):
        latents = self.latents.repeat(x.shape[0], 1, 1)
        x = self.proj_in(x)
        for attn, ff in self.layers:
            latents = attn(x, latents) + latents
            latents = ff(latents) + latents
        return self.norm_out(self.proj_out(latents))


class MultiProj(nn.Module):
    def __init__(self, out_dim: int = EMO_DIM):
        super().__init__()
        self.headpose_proj = nn.Linear(6, out_dim, bias=False)
        self.eye_proj = nn.Linear(6, out_dim, bias=False)
        self.emo_proj = nn.Linear(30, out_dim, bias=False)
        self.mouth_proj = nn.Linear(512, out_dim, bias=False)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, feats):  # [B, F, 554] → [B, F, 4, D]
        pose, eye, emo, mouth = torch.split(feats, FEATURE_SPLIT, -1)
        parts = [self.headpose_proj(pose), self.eye_proj(eye), self.emo_proj(emo), self.mouth_proj(mouth)]
        return torch.stack([self.norm(p) for p in parts], 2)


class PortraitEncoder(nn.Module):
    """Driving features [B, F, 554] → expression tokens [B, F, 24, 2048]."""

    def __init__(self, out_dim: int = EMO_DIM, resampler_dim: int = 1280, depth: int = 4, heads: int = 20,
                 dim_head: int = 64):
        super().__init__()
        self.proj_model = MultiProj(out_dim)
        self.mouth_proj_model = Resampler(resampler_dim, depth, dim_head, heads, 16, 512, out_dim)
        self.emo_proj_model = Resampler(resampler_dim, depth, dim_head, heads, 4, 30, out_dim)

    def forward(self, feats):
        b, f, _ = feats.shape
        _, _, emo, mouth = torch.split(feats, FEATURE_SPLIT, -1)
        mouth_tokens = self.mouth_proj_model(mouth.reshape(b * f, 1, 512)).view(b, f, -1, self.proj_model.norm
                                                                              .normalized_shape[0])
        emo_tokens = self.emo_proj_model(emo.reshape(b * f, 1, 30)).view(b, f, -1, mouth_tokens.shape[-1])
        return torch.cat([self.proj_model(feats), mouth_tokens, emo_tokens], 2)


def load_portrait_encoder(path: str) -> PortraitEncoder:
    state = torch_tensors(path)
    # Infer the sizes from the file so a differently sized release (or our tiny test file) loads as published.
    out_dim = state["proj_model.norm.weight"].shape[0]
    res_dim = state["mouth_proj_model.latents"].shape[-1]
    depth = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("mouth_proj_model.layers."))
    inner = state["mouth_proj_model.layers.0.0.to_q.weight"].shape[0]
    dim_head = 64 if inner % 64 == 0 and inner >= 64 else inner
    enc = PortraitEncoder(out_dim, res_dim, depth, inner // dim_head, dim_head)
    missing, unexpected = enc.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise FlashPortraitError(f"{path}: portrait encoder keys do not match (missing {missing[:3]}, "
                                 f"unexpected {unexpected[:3]})")
    return enc.eval()


# ---- pd_fpg.pth (PD-FGC motion encoder) -------------------------------------------------------------------------
class ConvBlock(nn.Module):
    """FAN's multi-scale residual block: three 3×3 convs whose outputs (½, ¼, ¼ of out) are concatenated."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout // 2, 3, 1, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout // 2), nn.Conv2d(cout // 2, cout // 4, 3, 1, 1, bias=False)
        self.bn3, self.conv3 = nn.BatchNorm2d(cout // 4), nn.Conv2d(cout // 4, cout // 4, 3, 1, 1, bias=False)
        self.downsample = None if cin == cout else nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(True),
                                                                 nn.Conv2d(cin, cout, 1, bias=False))

    def forward(self, x):
        a = self.conv1(F.relu(self.bn1(x)))
        b = self.conv2(F.relu(self.bn2(a)))
        c = self.conv3(F.relu(self.bn3(b)))
        return torch.cat([a, b, c], 1) + (x if self.downsample is None else self.downsample(x))


class HourGlass(nn.Module):
    def __init__(self, depth: int = 4, features: int = 256):
        super().__init__()
        self.depth = depth
        for level in range(depth, 0, -1):
            self.add_module(f"b1_{level}", ConvBlock(features, features))
            self.add_module(f"b2_{level}", ConvBlock(features, features))
            self.add_module(f"b3_{level}", ConvBlock(features, features))
        self.add_module("b2_plus_1", ConvBlock(features, features))

    def _level(self, level: int, x):
        up = self._modules[f"b1_{level}"](x)
        low = self._modules[f"b2_{level}"](F.max_pool2d(x, 2, 2))
        low = self._level(level - 1, low) if level > 1 else self._modules["b2_plus_1"](low)
        low = self._modules[f"b3_{level}"](low)
        return up + F.interpolate(low, size=up.shape[-2:], mode="bilinear", align_corners=False)

    def forward(self, x):
        return self._level(self.depth, x)


class FanBackbone(nn.Module):
    """224² face crop → 512-d motion feature (one-stack FAN, 68 heatmaps → conv → fc)."""

    def __init__(self, features: int = 256):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3), nn.BatchNorm2d(64)
        self.conv2, self.conv3, self.conv4 = ConvBlock(64, 128), ConvBlock(128, 128), ConvBlock(128, features)
        self.m0, self.top_m_0 = HourGlass(4, features), ConvBlock(features, features)
        self.conv_last0, self.bn_end0 = nn.Conv2d(features, features, 1), nn.BatchNorm2d(features)
        self.l0, self.bn5 = nn.Conv2d(features, 68, 1), nn.BatchNorm2d(68)
        self.conv6 = nn.Conv2d(68, 1, 3, 2, 1)
        self.fc = nn.Linear(28 * 28, 512)

    def forward(self, x):
        x = F.max_pool2d(self.conv2(F.relu(self.bn1(self.conv1(x)))), 2)
        x = self.conv4(self.conv3(x))
        ll = self.bn_end0(self.conv_last0(self.top_m_0(self.m0(x))))
        net = self.conv6(F.relu(self.bn5(self.l0(F.relu(ll)))))
        return self.fc(F.relu(net.flatten(1)))


def _head(out: int) -> Tuple[nn.Module, nn.Module]:
    return (nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.BatchNorm1d(512), nn.Linear(512, 512)),
            nn.Sequential(nn.ReLU(), nn.Linear(512, out)))


class FanEncoder(nn.Module):
    """PD-FGC: face crop → (head pose 6, eye 6, emotion 30, mouth 512) — `FEATURE_SPLIT` order when concatenated."""

    def __init__(self, pose_dim: int = 6, eye_dim: int = 6):
        super().__init__()
        self.model = FanBackbone()
        self.to_mouth, self.mouth_embed = _head(512 - pose_dim - eye_dim)
        self.to_headpose, self.headpose_embed = _head(pose_dim)
        self.to_eye, self.eye_embed = _head(eye_dim)
        self.to_emo, self.emo_embed = _head(30)

    def forward(self, crops):  # [N, 3, 224, 224] → [N, 554]
        x = self.model(crops)
        return torch.cat([self.headpose_embed(self.to_headpose(x)), self.eye_embed(self.to_eye(x)),
                          self.emo_embed(self.to_emo(x)), self.to_mouth(x)], -1)


def load_fan_encoder(path: str) -> FanEncoder:
    state = torch_tensors(path)
    enc = FanEncoder()
    missing, unexpected = enc.load_state_dict(state, strict=False)  # upstream loads strict=False too
    own = set(enc.state_dict())
    if not own & set(state):
        raise FlashPortraitError(f"{path}: no PD-FGC encoder weights in this file")
    if [k for k in missing if not k.endswith("num_batches_tracked")]:
        raise FlashPortraitError(f"{path}: PD-FGC encoder weights missing: {missing[:4]}")
    return enc.eval()


# ---- face_det.onnx / face_landmark.onnx --------------------------------------------------------------------------
def onnx_session(path: str):
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise FlashPortraitError("FlashPortrait's face models need onnxruntime: pip install vibeboard[foundry]") \
            from e
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


def landmarks(session, crop_128: torch.Tensor):
    """face_landmark.onnx on a [N,3,128,128] BGR 0..1 crop batch → (landmarks [N,222,2] in crop pixels, euler,
    prob). The net gives the 222 x's then the 222 y's, as fractions of the crop (upstream face_align.onnx_infer)."""
    name = session.get_inputs()[0].name
    out = session.run(None, {name: crop_128.numpy().astype("float32")})
    pts = torch.from_numpy(out[0]).reshape(crop_128.shape[0], 2, -1).transpose(1, 2) * crop_128.shape[-1]
    return pts, torch.from_numpy(out[1]), torch.from_numpy(out[2])


# ---- the model adapter -------------------------------------------------------------------------------------------
def normalise_expression(emo: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The normalised facial expression block: emo takes x's mean and std (over tokens and channels)."""
    mean_x, std_x = x.mean(dim=(1, 2), keepdim=True), x.std(dim=(1, 2), keepdim=True)
    mean_e, std_e = emo.mean(dim=(1, 2), keepdim=True), emo.std(dim=(1, 2), keepdim=True)
    return (emo - mean_e) * (std_x / (std_e + 1e-5)) + mean_x


class ExpressionState:
    """What each DiT call reads: tokens [B, F_lat, T, 2048] (+ optional key mask [B, F_lat, T]) and the
    expression scale (0 turns the branch off — the unconditional pass of the expression CFG). The one Wan sampler
    sets them per call from the conditioning (`inputs`, installed as the model's `vb_call_inputs`): the window's
    tokens in `cond.extra["expression_tokens"]`, the guidance pass's `expression_scale`."""

    def __init__(self):
        self.tokens: Optional[torch.Tensor] = None
        self.mask: Optional[torch.Tensor] = None
        self.scale: float = 1.0
        self._moved = None

    @contextlib.contextmanager
    def inputs(self, cond):
        saved = (self.tokens, self.mask, self.scale)
        extra = cond.extra
        self.tokens, self.mask = extra.get("expression_tokens"), extra.get("expression_mask")
        self.scale = float(extra.get("expression_scale", 1.0))
        try:
            yield
        finally:
            self.tokens, self.mask, self.scale = saved

    def on(self, device, dtype):
        """(tokens, mask) on the compute device, moved once per token tensor (every block reuses them)."""
        key = (id(self.tokens), id(self.mask), device, dtype)
        if self._moved is None or self._moved[0] != key:
            mask = None if self.mask is None else self.mask.to(device)
            self._moved = (key, self.tokens.to(device, dtype), mask, (self.tokens, self.mask))
        return self._moved[1], self._moved[2]


class ExpressionAttnProcessor(nn.Module):
    """Wan I2V cross-attention (text + CLIP image) plus FlashPortrait's per-frame expression attention."""

    def __init__(self, dim: int, state: ExpressionState, emo_dim: int = EMO_DIM):
        super().__init__()
        self.emo_k_proj = nn.Linear(emo_dim, dim, bias=False)
        self.emo_v_proj = nn.Linear(emo_dim, dim, bias=False)
        self.state = state

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        from ..models.tiny import TEXT_LEN
        ctx_img = None
        if attn.add_k_proj is not None:
            n_img = encoder_hidden_states.shape[1] - TEXT_LEN
            ctx_img, encoder_hidden_states = encoder_hidden_states[:, :n_img], encoder_hidden_states[:, n_img:]
        b, heads = hidden_states.shape[0], attn.heads
        q = attn.norm_q(attn.to_q(hidden_states)).unflatten(2, (heads, -1)).transpose(1, 2)
        k = attn.norm_k(attn.to_k(encoder_hidden_states)).unflatten(2, (heads, -1)).transpose(1, 2)
        v = attn.to_v(encoder_hidden_states).unflatten(2, (heads, -1)).transpose(1, 2)
        x = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)
        if ctx_img is not None:
            ki = attn.norm_added_k(attn.add_k_proj(ctx_img)).unflatten(2, (heads, -1)).transpose(1, 2)
            vi = attn.add_v_proj(ctx_img).unflatten(2, (heads, -1)).transpose(1, 2)
            x = x + F.scaled_dot_product_attention(q, ki, vi).transpose(1, 2).flatten(2)
        scale = self.state.scale
        if self.state.tokens is not None and scale != 0:
            tokens, mask = self.state.on(x.device, x.dtype)
            x = x + scale * normalise_expression(self._expression(q, tokens, mask, b, heads), x)
        x = attn.to_out[0](x)
        return attn.to_out[1](x)

    def _expression(self, q, tokens, mask, b, heads):
        """Queries of latent frame f attend only to frame f's tokens; a token tail that does not fill a frame
        (never with Wan's frame-major token order) gets no expression, as upstream."""
        frames, per = tokens.shape[1], tokens.shape[2]
        length, d = q.shape[2], q.shape[3]
        eff = (length // frames) * frames
        qf = q[:, :, :eff].reshape(b, heads, frames, eff // frames, d).permute(0, 2, 1, 3, 4)
        qf = qf.reshape(b * frames, heads, eff // frames, d)
        k = self.emo_k_proj(tokens).view(b * frames, per, heads, d).transpose(1, 2)
        v = self.emo_v_proj(tokens).view(b * frames, per, heads, d).transpose(1, 2)
        if mask is not None:
            mask = mask.reshape(b * frames, 1, 1, per).bool()
        out = F.scaled_dot_product_attention(qf, k, v, attn_mask=mask)
        out = out.transpose(1, 2).reshape(b, eff, heads * d)
        if eff != length:
            out = torch.cat([out, out.new_zeros(b, length - eff, out.shape[-1])], 1)
        return out


def patch_expression_attention(model, emo_weights: dict, state: Optional[ExpressionState] = None):
    """Install the expression cross-attention on `model` (pass a copy: this replaces processors and adds modules)
    and load `emo_weights` ({block: {"k","v"}} from `split_transformer_state`). The projections become
    submodules of each block's cross-attention, so block swap streams them with their block. Returns the
    shared state, also installed as `model.vb_call_inputs` for the Wan sampler."""
    state = state or ExpressionState()
    blocks = model.blocks
    if set(emo_weights) != set(range(len(blocks))):
        raise FlashPortraitError(f"expression weights cover blocks {sorted(emo_weights)[:4]}…, the model has "
                                 f"{len(blocks)} blocks")
    for i, block in enumerate(blocks):
        attn = block.attn2
        dim = attn.to_q.out_features
        proc = ExpressionAttnProcessor(dim, state, emo_weights[i]["k"].shape[1])
        with torch.no_grad():
            proc.emo_k_proj.weight.copy_(emo_weights[i]["k"])
            proc.emo_v_proj.weight.copy_(emo_weights[i]["v"])
        ref = attn.to_q.weight
        proc.to(device=ref.device, dtype=ref.dtype)
        attn.add_module("vb_expression", proc)  # so .to()/offload move its weights with the block
        attn.processor = proc
    model.vb_call_inputs = state.inputs
    return state


def per_latent_frame(tokens: torch.Tensor, temporal: int = 4) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per driving-frame tokens [B, F_pix, T, D] (F_pix = 4k+1) → per latent frame [B, k+1, 4T, D] + mask: the
    first latent frame holds one pixel frame (padded, masked), every later one the 4 frames it encodes."""
    b, fpix, t, d = tokens.shape
    if (fpix - 1) % temporal:
        raise FlashPortraitError(f"{fpix} driving frames: Wan needs 4k+1")
    first = torch.cat([tokens[:, :1], tokens.new_zeros(b, temporal - 1, t, d)], 1).reshape(b, 1, temporal * t, d)
    rest = tokens[:, 1:].reshape(b, (fpix - 1) // temporal, temporal * t, d)
    mask = torch.ones(b, 1 + (fpix - 1) // temporal, temporal * t, dtype=torch.bool)
    mask[:, 0, t:] = False
    return torch.cat([first, rest], 1), mask


# ---- the published folder ----------------------------------------------------------------------------------------
def resolve_files(node: str, input_name: str, folder: str) -> Dict[str, str]:
    """{file name: path} of every published file in `folder` (models-relative or absolute). The first missing one
    is a NodeInputError naming the node, the input and the exact path expected."""
    from ..common import runtime
    from ..models.loaders import model_path
    root = model_path(node, input_name, folder, must_be_dir=True)
    out = {}
    for name in FILES:
        path = os.path.join(root, name)
        if name == "transformer.pt" and not os.path.isfile(path) and os.path.isfile(
                os.path.join(root, "transformer.safetensors")):
            path = os.path.join(root, "transformer.safetensors")  # a one-time conversion is read the same way
        if not os.path.isfile(path):
            raise runtime.NodeInputError(node, input_name, f"FlashPortrait file missing: expected {path} "
                                         "(vibeboard models pull flashportrait)")
        out[name] = path
    return out
