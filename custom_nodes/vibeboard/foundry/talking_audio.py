"""The MultiTalk / InfiniteTalk audio adapter (MeiGen-AI) for Wan2.1-I2V, read in its published layout, as a model
adapter that patches a copy of a diffusers `WanTransformer3DModel`.

Published keys (single-speaker files such as `infinitetalk_single.safetensors`):
`audio_proj.{proj1, proj1_vf, proj2, proj3, norm}.*` (AudioProjModel: wav2vec2 features → 32 tokens × 768 per latent
frame) and per block `blocks.N.audio_cross_attn.{q_linear, kv_linear, proj}.*` + `blocks.N.norm_x.*`. In each block
the audio attention comes after the text/image cross-attention and before the FFN:
`x = x + proj(attn(q_linear(norm_x(x)), kv_linear(audio tokens of the same latent frame)))`, queries of latent
frame f attending to frame f's tokens only. Audio features: wav2vec2-base hidden states of its 12 layers at the
video frame rate, each frame with a window of 5 frames around it (`audio_windows`).

Hook-up to the one Wan runtime: `patch_audio_adapter` is the model adapter (pass the runtime's model copy);
a conditioning builder sets `AudioState.tokens` = `AudioProj(...)(*latent_frame_groups(windows))` per window.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

AUDIO_WINDOW = 5
WAV2VEC_LAYERS, WAV2VEC_DIM = 12, 768


class AudioAdapterError(ValueError):
    pass


class AudioProjModel(nn.Module):
    def __init__(self, seq_len=AUDIO_WINDOW, seq_len_vf=AUDIO_WINDOW + 3, blocks=WAV2VEC_LAYERS, channels=WAV2VEC_DIM,
                 intermediate_dim=512, output_dim=768, context_tokens=32, norm_output_audio=True):
        super().__init__()
        self.context_tokens, self.output_dim = context_tokens, output_dim
        self.proj1 = nn.Linear(seq_len * blocks * channels, intermediate_dim)
        self.proj1_vf = nn.Linear(seq_len_vf * blocks * channels, intermediate_dim)
        self.proj2 = nn.Linear(intermediate_dim, intermediate_dim)
        self.proj3 = nn.Linear(intermediate_dim, context_tokens * output_dim)
        self.norm = nn.LayerNorm(output_dim) if norm_output_audio else nn.Identity()

    def forward(self, first: torch.Tensor, latter: torch.Tensor) -> torch.Tensor:
        """first [B,1,5,L,C], latter [B,T-1,8,L,C] → tokens [B, T, 32, output_dim]."""
        b = first.shape[0]
        a = F.relu(self.proj1(first.flatten(2)))
        v = F.relu(self.proj1_vf(latter.flatten(2)))
        x = F.relu(self.proj2(torch.cat([a, v], 1)))
        return self.norm(self.proj3(x).view(b, -1, self.context_tokens, self.output_dim))


def audio_windows(features: torch.Tensor, window: int = AUDIO_WINDOW) -> torch.Tensor:
    """Per video frame features [F, L, C] → [F, window, L, C]: frames i−2 … i+2 (clamped at the ends)."""
    n = features.shape[0]
    half = window // 2
    idx = (torch.arange(n)[:, None] + torch.arange(-half, half + 1)[None]).clamp(0, n - 1)
    return features[idx]


def latent_frame_groups(windows: torch.Tensor, temporal: int = 4) -> Tuple[torch.Tensor, torch.Tensor]:
    """[F=4k+1, 5, L, C] → (first [1,1,5,L,C], latter [1,k,8,L,C]): a later latent frame sees the first half-window
    of its first pixel frame, the centre of the middle ones and the second half of its last (MultiTalk's layout)."""
    f, w = windows.shape[:2]
    if (f - 1) % temporal:
        raise AudioAdapterError(f"{f} frames: Wan needs 4k+1")
    mid = w // 2
    groups = windows[1:].reshape((f - 1) // temporal, temporal, *windows.shape[1:])
    latter = torch.cat([groups[:, 0, :mid + 1], groups[:, 1:-1, mid].flatten(1, 1).reshape(groups.shape[0], -1,
                                                                                           *windows.shape[2:]),
                        groups[:, -1, mid:]], 1)
    return windows[:1][None], latter[None]


class AudioState:
    def __init__(self):
        self.tokens: Optional[torch.Tensor] = None   # [B, T_lat, 32, D_audio]
        self.scale: float = 1.0
        self.residual: Optional[torch.Tensor] = None  # the block's stream before cross-attention (set by a hook)


class AudioCrossAttention(nn.Module):
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


class _CrossAttnWithAudio(nn.Module):
    """Wraps a block's `attn2`: returns cross-attention + audio attention so that the block's own residual add
    gives x + cross + audio(norm_x(x + cross)) — the published order, without editing the block."""

    def __init__(self, attn2: nn.Module, audio: AudioCrossAttention, norm_x: nn.LayerNorm, state: AudioState):
        super().__init__()
        self.inner, self.audio_cross_attn, self.norm_x, self.state = attn2, audio, norm_x, state

    def forward(self, hidden_states, encoder_hidden_states=None, *args, **kwargs):
        out = self.inner(hidden_states, encoder_hidden_states, *args, **kwargs)
        st = self.state
        if st.tokens is None or st.scale == 0 or st.residual is None:
            return out
        x = st.residual + out
        audio = self.audio_cross_attn(self.norm_x(x.float()).to(x.dtype), st.tokens.to(x.dtype))
        return out + st.scale * audio

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["inner"], name)


def split_adapter_state(state: Dict[str, torch.Tensor]) -> Tuple[dict, dict]:
    """(audio_proj state, {block: {name: tensor}}) from a published file (any Wan weights in it are ignored)."""
    proj, blocks = {}, {}
    for key, value in state.items():
        for prefix in ("model.diffusion_model.", "diffusion_model.", "model."):
            if key.startswith(prefix):
                key = key[len(prefix):]
        if key.startswith("audio_proj."):
            proj[key[len("audio_proj."):]] = value
        elif key.startswith("blocks.") and (".audio_cross_attn." in key or ".norm_x." in key):
            _, idx, rest = key.split(".", 2)
            blocks.setdefault(int(idx), {})[rest] = value
    if not proj or not blocks:
        raise AudioAdapterError("no audio_proj.* / blocks.N.audio_cross_attn.* weights: not a MultiTalk/InfiniteTalk "
                                "audio adapter file")
    return proj, blocks


def load_audio_proj(proj_state: dict) -> AudioProjModel:
    w1, w1vf, w3 = proj_state["proj1.weight"], proj_state["proj1_vf.weight"], proj_state["proj3.weight"]
    out_dim = proj_state["norm.weight"].shape[0] if "norm.weight" in proj_state else 768
    per = WAV2VEC_LAYERS * WAV2VEC_DIM if w1.shape[1] % (WAV2VEC_LAYERS * WAV2VEC_DIM) == 0 else None
    if per is None:
        raise AudioAdapterError(f"audio_proj.proj1 takes {w1.shape[1]} inputs, not a multiple of 12×768")
    model = AudioProjModel(w1.shape[1] // per, w1vf.shape[1] // per, WAV2VEC_LAYERS, WAV2VEC_DIM, w1.shape[0],
                           out_dim, w3.shape[0] // out_dim, "norm.weight" in proj_state)
    model.load_state_dict(proj_state)
    return model.eval()


def patch_audio_adapter(model, block_states: dict, state: Optional[AudioState] = None) -> AudioState:
    """Install the audio attention on `model` (a copy: attn2 is wrapped, norm2 gets a hook). Returns the state the
    sampler fills with `tokens` per window."""
    state = state or AudioState()
    if set(block_states) != set(range(len(model.blocks))):
        raise AudioAdapterError(f"audio weights for blocks {sorted(block_states)[:4]}…, the model has "
                                f"{len(model.blocks)} blocks")
    heads = model.config.num_attention_heads
    for i, block in enumerate(model.blocks):
        w = block_states[i]
        dim = block.attn2.to_q.out_features
        audio = AudioCrossAttention(dim, w["audio_cross_attn.kv_linear.weight"].shape[1], heads)
        norm_x = nn.LayerNorm(dim, eps=1e-6)
        audio.load_state_dict({k[len("audio_cross_attn."):]: v for k, v in w.items()
                               if k.startswith("audio_cross_attn.")})
        norm_x.load_state_dict({k[len("norm_x."):]: v for k, v in w.items() if k.startswith("norm_x.")})
        ref = block.attn2.to_q.weight
        audio.to(ref.device, ref.dtype)
        norm_x.to(ref.device)  # LayerNorm kept in fp32, as upstream computes it
        block.norm2.register_forward_pre_hook(lambda mod, args, st=state: setattr(st, "residual", args[0]))
        block.attn2 = _CrossAttnWithAudio(block.attn2, audio, norm_x, state)
    return state


@torch.no_grad()
def wav2vec_features(model, waveform_16k: torch.Tensor, frames: int) -> torch.Tensor:
    """wav2vec2 (transformers `Wav2Vec2Model`) hidden states of layers 1…12, resampled to `frames` video frames
    → [frames, 12, 768] (MultiTalk interpolates the features to the video frame count)."""
    out = model(waveform_16k[None].to(next(model.parameters()).dtype), output_hidden_states=True)
    hs = torch.stack(out.hidden_states[1:], 1)[0].float()               # [N_audio, L, C]
    hs = F.interpolate(hs.permute(1, 2, 0), size=frames, mode="linear", align_corners=True)
    return hs.permute(2, 0, 1)
