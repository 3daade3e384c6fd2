"""The MultiTalk / InfiniteTalk audio adapter (MeiGen-AI) for Wan2.1-I2V, in its published layout, as a model
adapter of the one Wan runtime (`wan/sampler.py` enters `InfiniteTalkAdapter.call_inputs` around each DiT call).

Published files (`MeiGen-AI/InfiniteTalk` `single/infinitetalk.safetensors`, `multi/infinitetalk.safetensors`;
`MeiGen-AI/MeiGen-MultiTalk` `multitalk.safetensors`) hold exactly the weights upstream's `WanModel` adds to a
Wan2.1-I2V-14B DiT (upstream strict-loads them together with the base shards):
- `audio_proj.{proj1, proj1_vf, proj2, proj3, norm}.*` — AudioProjModel: per latent frame a window of wav2vec2
  features (12 layers × 768) → 32 context tokens of 768;
- per block `blocks.N.audio_cross_attn.{q_linear, kv_linear, proj}.{weight,bias}` (SingleStreamAttention,
  qkv_bias, no q/k norm) and `blocks.N.norm_x.{weight,bias}` (LayerNorm, eps 1e-6, computed in fp32).
In each block the audio attention comes after the text/image cross-attention and before the FFN:
`x = x + proj(attn(q_linear(norm_x(x)), kv_linear(tokens)))`, the queries of latent frame f attending to frame f's
tokens only.

Audio features as upstream (`src/audio_analysis/wav2vec2.py`, `generate_infinitetalk.py::get_embedding`): the
wav2vec2 CNN features are linearly interpolated to the *video* frame count before the transformer, and the
hidden states of its 12 layers are kept → [frames, 12, 768]. Every video frame sees a window of 5 (frames i−2…i+2,
clamped at the ends of the whole clip); a later latent frame gets 8 of them (`latent_frame_groups`).

Guidance as upstream (`wan/multitalk.py`, vanilla CFG branch): `uncond + text_cfg·(cond − drop_text) +
audio_cfg·(drop_text − uncond)` where drop_text keeps the audio and uncond also zeroes the wav2vec features (not
the tokens: the zero features still go through audio_proj and its biases); with text_cfg 1,
`drop_audio + audio_cfg·(cond − drop_audio)`. `audio_guidance` writes that as the one sampler's multi-term guidance
(`wan.conditioning.Guidance`): the sampler owns the passes, their batching into one forward (batch_cfg) and the
combination; the adapter only supplies each pass's model inputs (audio tokens on or off, per batch row) through
`call_inputs`, the per-call hook of `wan.sampler.predict`.
"""
from __future__ import annotations

import contextlib
import math
from typing import Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

AUDIO_WINDOW = 5            # upstream audio_window
VAE_SCALE = 4               # latent frame = 4 pixel frames
WAV2VEC_LAYERS, WAV2VEC_DIM = 12, 768
WAV2VEC_RATE = 16000
EXTRA_KEY = "infinitetalk"  # cond.extra entry: the segment's wav2vec windows (+ the tokens cached per segment)
PREFIXES = ("model.diffusion_model.", "diffusion_model.", "model.")


class AudioAdapterError(ValueError):
    pass


class Fp32LayerNorm(nn.LayerNorm):
    """LayerNorm computed in fp32 whatever the weights' dtype (upstream normalises under fp32 autocast): tokens and
    bf16 weights are promoted inside forward, so offload hooks on this module still move its weights in first."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = None if self.weight is None else self.weight.float()
        b = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, w, b, self.eps).to(x.dtype)


class AudioProjModel(nn.Module):
    """wav2vec2 windows → context tokens. `feature_dim` = layers × channels of the audio encoder (12 × 768)."""

    def __init__(self, seq_len=AUDIO_WINDOW, seq_len_vf=AUDIO_WINDOW + VAE_SCALE - 1,
                 feature_dim=WAV2VEC_LAYERS * WAV2VEC_DIM, intermediate_dim=512, output_dim=768, context_tokens=32,
                 norm_output_audio=True):
        super().__init__()
        self.context_tokens, self.output_dim, self.feature_dim = context_tokens, output_dim, feature_dim
        self.proj1 = nn.Linear(seq_len * feature_dim, intermediate_dim)
        self.proj1_vf = nn.Linear(seq_len_vf * feature_dim, intermediate_dim)
        self.proj2 = nn.Linear(intermediate_dim, intermediate_dim)
        self.proj3 = nn.Linear(intermediate_dim, context_tokens * output_dim)
        self.norm = Fp32LayerNorm(output_dim) if norm_output_audio else nn.Identity()

    def forward(self, first: torch.Tensor, latter: torch.Tensor) -> torch.Tensor:
        """first [B,1,5,L,C], latter [B,T-1,8,L,C] → tokens [B, T, 32, output_dim]."""
        b = first.shape[0]
        a = F.relu(self.proj1(first.flatten(2)))
        v = F.relu(self.proj1_vf(latter.flatten(2)))
        x = F.relu(self.proj2(torch.cat([a, v], 1)))
        tokens = self.proj3(x).view(b, -1, self.context_tokens, self.output_dim)
        return self.norm(tokens)


def audio_windows(features: torch.Tensor, frames: Optional[torch.Tensor] = None,
                  window: int = AUDIO_WINDOW) -> torch.Tensor:
    """Per video frame features [N, L, C] → [F, window, L, C] for the frame indices `frames` (default all): frames
    i−2 … i+2, clamped to the whole clip (upstream clamps to the full audio, not to the segment)."""
    n = features.shape[0]
    frames = torch.arange(n) if frames is None else frames
    half = window // 2
    idx = (frames[:, None] + torch.arange(-half, half + 1)[None]).clamp(0, n - 1)
    return features[idx]


def latent_frame_groups(windows: torch.Tensor, temporal: int = VAE_SCALE) -> Tuple[torch.Tensor, torch.Tensor]:
    """[F=4k+1, 5, L, C] → (first [1,1,5,L,C], latter [1,k,8,L,C]): a later latent frame sees the first half-window
    of its first pixel frame, the centre of the middle ones and the second half of its last (upstream's layout)."""
    f, w = windows.shape[:2]
    if (f - 1) % temporal:
        raise AudioAdapterError(f"{f} frames: Wan needs 4k+1")
    mid = w // 2
    groups = windows[1:].reshape((f - 1) // temporal, temporal, *windows.shape[1:])
    latter = torch.cat([groups[:, 0, :mid + 1], groups[:, 1:-1, mid], groups[:, -1, mid:]], 1)
    return windows[:1][None], latter[None]


class AudioCrossAttention(nn.Module):
    """Upstream's SingleStreamAttention for one speaker: per latent frame, its queries attend to its tokens."""

    def __init__(self, dim: int, audio_dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q_linear = nn.Linear(dim, dim)
        self.kv_linear = nn.Linear(audio_dim, dim * 2)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        b, length, dim = x.shape
        frames = tokens.shape[1]
        if length % frames:
            raise AudioAdapterError(f"{length} video tokens do not split into {frames} latent frames")
        d = dim // self.heads
        q = self.q_linear(x).view(b * frames, length // frames, self.heads, d).transpose(1, 2)
        k, v = self.kv_linear(tokens.flatten(0, 1)).view(b * frames, tokens.shape[2], 2, self.heads, d).unbind(2)
        out = F.scaled_dot_product_attention(q, k.transpose(1, 2), v.transpose(1, 2))
        return self.proj(out.transpose(1, 2).reshape(b, length, dim))


class AudioBlock(nn.Module):
    def __init__(self, dim: int, audio_dim: int, heads: int, eps: float = 1e-6):
        from diffusers.models.normalization import FP32LayerNorm  # upstream's WanLayerNorm: computed in fp32
        super().__init__()
        self.audio_cross_attn = AudioCrossAttention(dim, audio_dim, heads)
        self.norm_x = FP32LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        # modules are called (not their weights read): offload hooks then bring the weights in
        return self.audio_cross_attn(self.norm_x(x), tokens.to(x.dtype))


class InfiniteTalkAdapter(nn.Module):
    """The published adapter weights as one module (its state_dict keys are the file's keys), plus the sampler
    protocol. The base DiT is never modified: `attached()` hooks the audio attention onto it for one call."""

    def __init__(self, dim: int, heads: int, num_layers: int, feature_dim: int = WAV2VEC_LAYERS * WAV2VEC_DIM,
                 intermediate_dim: int = 512, output_dim: int = 768, context_tokens: int = 32,
                 norm_output_audio: bool = True, eps: float = 1e-6):
        super().__init__()
        self.audio_proj = AudioProjModel(feature_dim=feature_dim, intermediate_dim=intermediate_dim,
                                         output_dim=output_dim, context_tokens=context_tokens,
                                         norm_output_audio=norm_output_audio)
        self.blocks = nn.ModuleList(AudioBlock(dim, output_dim, heads, eps) for _ in range(num_layers))

    # ---- tokens ----
    def tokens(self, windows: torch.Tensor, device=None, dtype=None) -> torch.Tensor:
        """Windows [F=4k+1, 5, L, C] of one segment → tokens [1, k+1, 32, D] (computed on `device` in `dtype`,
        default this adapter's: under sequential offload the weights only arrive there when a layer runs)."""
        p = self.audio_proj.proj1.weight
        first, latter = latent_frame_groups(windows.to(device or p.device, dtype or p.dtype))
        return self.audio_proj(first, latter)

    @contextlib.contextmanager
    def attached(self, base, tokens: torch.Tensor, scale: float = 1.0):
        """Hook the audio attention into every block of `base` (a diffusers WanTransformer3DModel) for the calls
        inside (`tokens` [B, T, 32, D], or a function (device, dtype) → tokens): the block's stream before
        cross-attention is captured at norm2's input, and attn2's output becomes cross + scale·audio(norm_x(x +
        cross)) so the block's own residual add gives the published order."""
        if len(base.blocks) != len(self.blocks):
            raise AudioAdapterError(f"the audio adapter has {len(self.blocks)} blocks, the DiT {len(base.blocks)}")
        handles, stream, resolved = [], {}, {}

        def resolve(out):  # `tokens`: a tensor, or tokens(device, dtype) made once for this call
            if not callable(tokens):
                return tokens
            if "t" not in resolved:
                resolved["t"] = tokens(out.device, out.dtype)
            return resolved["t"]
        for i, (block, extra) in enumerate(zip(base.blocks, self.blocks)):
            def keep(mod, args, i=i):
                stream[i] = args[0]

            def add(mod, args, out, i=i, extra=extra):
                x = stream.pop(i).to(out.dtype) + out
                return out + scale * extra(x, resolve(out)).to(out.dtype)
            handles.append(block.norm2.register_forward_pre_hook(keep))
            handles.append(block.attn2.register_forward_hook(add))
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    # ---- the sampler protocol (wan/sampler.py: handle.adapter with `call_inputs`) ----
    vb_pass_rows = True   # reads one pass's inputs per batch row (the sampler may batch the guidance passes)

    def segment_tokens(self, state: dict, device, dtype) -> Tuple[torch.Tensor, torch.Tensor]:
        """(audio tokens, silent tokens) of a segment: audio_proj of its wav2vec windows and of zero features
        (upstream's audio-dropped input), computed once per segment, device and dtype (cached in `state`)."""
        key = ("tokens", device, dtype)
        if key not in state:
            with torch.no_grad():
                state[key] = (self.tokens(state["windows"], device, dtype),
                              self.tokens(torch.zeros_like(state["windows"]), device, dtype))
        return state[key]

    @contextlib.contextmanager
    def call_inputs(self, base, cond):
        """The audio attention hooked onto `base` for one DiT call: per batch row (`conditioning.pass_rows`) the
        segment's audio tokens, or its silent tokens where the guidance pass sets `audio` False.
        cond.extra["infinitetalk"]["windows"]: this segment's wav2vec windows [4k+1, 5, L, C]."""
        from ..wan.conditioning import pass_rows
        state = cond.extra[EXTRA_KEY]
        audio_on = [bool(row.get("audio", True)) for row in pass_rows(cond.extra)]

        def tokens(device, dtype):  # resolved at the first block, on the device and in the dtype it runs in
            audio, silent = self.segment_tokens(state, device, dtype)
            return torch.cat([audio if on else silent for on in audio_on])
        with self.attached(base, tokens):
            yield


def audio_guidance(prompt: torch.Tensor, negative: torch.Tensor, text_cfg: float, audio_cfg: float):
    """Upstream's text + audio guidance as the sampler's passes and terms (module docstring); pass order = the
    rows of the batched forward: text + audio, audio without text, neither."""
    from ..wan.conditioning import Guidance, GuidancePass
    cond = GuidancePass(prompt, {"audio": True})
    if math.isclose(float(text_cfg), 1.0):
        drop_audio = GuidancePass(prompt, {"audio": False})
        return Guidance({"cond": cond, "drop_audio": drop_audio}, "drop_audio",
                        [(float(audio_cfg), "cond", "drop_audio")])
    drop_text = GuidancePass(negative, {"audio": True})
    uncond = GuidancePass(negative, {"audio": False})
    return Guidance({"cond": cond, "drop_text": drop_text, "uncond": uncond}, "uncond",
                    [(float(text_cfg), "cond", "drop_text"), (float(audio_cfg), "drop_text", "uncond")])


# ---- the published file ------------------------------------------------------------------------------------------
def _strip(key: str) -> str:
    for prefix in PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def adapter_from_state(state: Dict[str, torch.Tensor], base_config, source: str = "audio adapter") \
        -> InfiniteTalkAdapter:
    """Build the adapter from a published state dict with strict key matching: a missing or an unexpected key
    is an AudioAdapterError naming `source` and the keys."""
    state = {_strip(k): v for k, v in state.items()}
    if "audio_proj.proj1.weight" not in state or "blocks.0.audio_cross_attn.q_linear.weight" not in state:
        raise AudioAdapterError(f"{source}: no audio_proj.* / blocks.N.audio_cross_attn.* weights — not a "
                                "MultiTalk/InfiniteTalk audio adapter file")
    w1, w3 = state["audio_proj.proj1.weight"], state["audio_proj.proj3.weight"]
    if w1.shape[1] % AUDIO_WINDOW:
        raise AudioAdapterError(f"{source}: audio_proj.proj1 takes {w1.shape[1]} inputs, not 5 frames of features")
    out_dim = state["blocks.0.audio_cross_attn.kv_linear.weight"].shape[1]
    dim = base_config.num_attention_heads * base_config.attention_head_dim
    layers = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    if state["blocks.0.audio_cross_attn.q_linear.weight"].shape[0] != dim or layers != base_config.num_layers:
        raise AudioAdapterError(f"{source}: adapter for a DiT of width "
                                f"{state['blocks.0.audio_cross_attn.q_linear.weight'].shape[0]} with {layers} "
                                f"blocks; the loaded Wan I2V has width {dim} and {base_config.num_layers} blocks")
    adapter = InfiniteTalkAdapter(dim, base_config.num_attention_heads, layers, w1.shape[1] // AUDIO_WINDOW,
                                  w1.shape[0], out_dim, w3.shape[0] // out_dim, "audio_proj.norm.weight" in state,
                                  getattr(base_config, "eps", 1e-6))
    own = adapter.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise AudioAdapterError(f"{source}: keys do not match the published audio adapter layout — missing "
                                f"{missing[:5]}{'…' if len(missing) > 5 else ''}, unexpected "
                                f"{unexpected[:5]}{'…' if len(unexpected) > 5 else ''}")
    bad = [k for k in own if own[k].shape != state[k].shape]
    if bad:
        raise AudioAdapterError(f"{source}: {bad[0]} has shape {tuple(state[bad[0]].shape)}, the layout needs "
                                f"{tuple(own[bad[0]].shape)}")
    adapter.load_state_dict(state, strict=True)
    return adapter.eval().requires_grad_(False)


def load_adapter(path: str, base_config, dtype: torch.dtype = torch.bfloat16) -> InfiniteTalkAdapter:
    """`infinitetalk.safetensors` / `multitalk.safetensors` → InfiniteTalkAdapter (safetensors only)."""
    if not str(path).endswith((".safetensors", ".sft")):
        raise AudioAdapterError(f"{path}: the audio adapter is read from .safetensors only (as published)")
    from safetensors.torch import load_file
    adapter = adapter_from_state(load_file(str(path)), base_config, source=str(path))
    return adapter.to(dtype)


# ---- wav2vec2 features --------------------------------------------------------------------------------------------
def load_wav2vec(folder: str, dtype: torch.dtype = torch.float32):
    """(Wav2Vec2FeatureExtractor, Wav2Vec2Model) from a `TencentGameMate/chinese-wav2vec2-base` folder
    (config.json, preprocessor_config.json, model.safetensors); weights from safetensors only."""
    import os
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model
    if not os.path.isfile(os.path.join(folder, "model.safetensors")):
        raise AudioAdapterError(f"{folder}: model.safetensors missing (the chinese-wav2vec2-base weights as "
                                "safetensors: `vibeboard models pull chinese-wav2vec2-base`)")
    model = Wav2Vec2Model.from_pretrained(folder, use_safetensors=True, torch_dtype=dtype).eval()
    if os.path.isfile(os.path.join(folder, "preprocessor_config.json")):
        extractor = Wav2Vec2FeatureExtractor.from_pretrained(folder)
    else:
        extractor = Wav2Vec2FeatureExtractor(sampling_rate=WAV2VEC_RATE, do_normalize=True)
    return extractor, model


def prepare_speech(waveform: np.ndarray, rate: int, lufs: float = -23.0) -> np.ndarray:
    """[C, N] any rate → mono float32 at 16 kHz, loudness-normalised to −23 LUFS as upstream (pyloudnorm; silence
    or near-silence is left as is, like upstream's |loudness| > 100 guard)."""
    from ..media.audio import resample
    mono = np.asarray(waveform, dtype=np.float32).mean(0, keepdims=True)
    speech = resample(mono, rate, WAV2VEC_RATE)[0] if rate != WAV2VEC_RATE else mono[0]
    try:
        import pyloudnorm as pyln
    except ImportError:
        return speech
    if speech.shape[0] < int(0.4 * WAV2VEC_RATE):  # BS.1770 needs one 400 ms block
        return speech
    loudness = pyln.Meter(WAV2VEC_RATE).integrated_loudness(speech.astype(np.float64))
    if not np.isfinite(loudness) or abs(loudness) > 100:
        return speech
    return pyln.normalize.loudness(speech.astype(np.float64), loudness, lufs).astype(np.float32)


@torch.no_grad()
def wav2vec_features(extractor, model, speech_16k: np.ndarray, frames: int) -> torch.Tensor:
    """Upstream's get_embedding: the CNN features are interpolated to `frames` video frames *before* the
    transformer (upstream subclasses Wav2Vec2Model for that; here a forward hook on the stock model's
    feature_extractor does it), then the hidden states of every layer → [frames, layers, hidden] (fp32, CPU)."""
    values = extractor(speech_16k, sampling_rate=WAV2VEC_RATE).input_values
    p = next(model.parameters())
    x = torch.as_tensor(np.asarray(values), dtype=p.dtype, device=p.device).reshape(1, -1)

    def to_video_rate(mod, args, feats):                                     # [1, C, T_audio] → [1, C, frames]
        return F.interpolate(feats.float(), size=int(frames), mode="linear", align_corners=True).to(feats.dtype)
    hook = model.feature_extractor.register_forward_hook(to_video_rate)
    try:
        out = model(x, output_hidden_states=True, return_dict=True)
    finally:
        hook.remove()
    return torch.stack(out.hidden_states[1:], 1)[0].transpose(0, 1).float().cpu()   # [frames, layers, C]
