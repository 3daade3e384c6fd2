"""InfCam (emjay73/InfCam, arXiv 2512.17040) on diffusers' WanTransformer3DModel (Wan2.1-T2V-1.3B).

Video-to-video re-rendering along a new camera path. Target and source latents travel as one batch
("two b": target rows first). Per block, before Wan's own self-attention, InfCam adds:
  1. a second modulation (`modulation0`, LayerNorm `norm0`) of the block input;
  2. the first *source* frame's modulated tokens, repeated to every latent frame and warped by the infinite
     homography of that frame's target rotation (vfx/homography.py), through a zero-initialised 1×1×1
     Conv3d (`zero_conv`), added back to the unwarped first-frame tokens;
  3. camera embeddings from a per-block Linear(16 → dim) (`cam_encoder`) over [K (4, normalised by the
     image width), c2w 3×4 (12)]: target tokens get (K_trg, [R|t]), source tokens (K_src, [I|0]),
     warped tokens (K_trg, [I|t]);
  4. "triplet" attention (`self_attn_pre`, its own q/k/v/o + RMS norms) per latent frame over the
     (target, source, warped) token planes with a 3-frame RoPE; the target and source outputs are added
     with `gate_msa0`. Then the unchanged Wan block runs on (two b)(f h w).
Both halves share the timestep. Only the target half's prediction is used.

Checkpoint: InfCam's `step35000.ckpt` is a full DiffSynth/original-Wan state dict (`blocks.N.self_attn.q`,
…) plus `blocks.N.{self_attn_pre.*, modulation0, cam_encoder.*, zero_conv.*}`. We read it as safetensors
(convert once with docs/vfx.md's snippet — never unpickle files you did not make). Base weights are
renamed to diffusers with vibeboard.models.wan_keys; InfCam additions go to `infcam.N.*`.
"""
from __future__ import annotations

import re

import torch
import torch.nn as nn
import torch.nn.functional as F

from .homography import infcam_grid_intrinsics, infinite_homography, sampling_grid

INFCAM_EXTRA = ("self_attn_pre", "modulation0", "cam_encoder", "zero_conv", "norm0")
_EXTRA_RE = re.compile(r"^blocks\.(\d+)\.(self_attn_pre|modulation0|cam_encoder|zero_conv)(\..*)?$")


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Interleaved-pair rotary embedding (diffusers' Wan convention; equal to Wan's complex form).
    x [N, S, heads, d]; cos/sin [1, S, 1, d]."""
    x1, x2 = x.float().unflatten(-1, (-1, 2)).unbind(-1)
    c, s = cos[..., 0::2], sin[..., 1::2]
    out = torch.stack([x1 * c - x2 * s, x1 * s + x2 * c], dim=-1).flatten(-2)
    return out.type_as(x)


class LoRALinear(nn.Module):
    """InfCam's optional source-branch adapter: base Linear (shared weights) + B·A·scale."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.original_layer = base
        self.lora_A = nn.Linear(base.in_features, rank, bias=False)
        self.lora_B = nn.Linear(rank, base.out_features, bias=False)
        nn.init.zeros_(self.lora_B.weight)
        self.scale = alpha / rank

    def forward(self, x):
        return self.original_layer(x) + self.lora_B(self.lora_A(x)) * self.scale


class TripletAttention(nn.Module):
    """InfCam `SelfAttentionPre`: attention inside each latent frame over (target, source, warped) planes."""

    def __init__(self, dim: int, num_heads: int, eps: float = 1e-6, rank: int = 0, alpha: float = 16):
        super().__init__()
        self.num_heads = num_heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q = nn.RMSNorm(dim, eps=eps)
        self.norm_k = nn.RMSNorm(dim, eps=eps)
        self.rank = rank
        if rank > 0:
            self.q_lora = LoRALinear(self.q, rank, alpha)
            self.k_lora = LoRALinear(self.k, rank, alpha)
            self.v_lora = LoRALinear(self.v, rank, alpha)
            self.norm_q_lora = nn.RMSNorm(dim, eps=eps)
            self.norm_k_lora = nn.RMSNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor, rope) -> torch.Tensor:
        """x [N, 3, h, w, D] (N = batch × frames) → [N, 3·h·w, D]."""
        n, three, h, w, d = x.shape
        trg, src = x[:, :1], x[:, 1:]
        q, k, v = self.norm_q(self.q(trg)), self.norm_k(self.k(trg)), self.v(trg)
        if self.rank > 0:
            qs, ks, vs = self.norm_q_lora(self.q_lora(src)), self.norm_k_lora(self.k_lora(src)), self.v_lora(src)
        else:
            qs, ks, vs = self.norm_q(self.q(src)), self.norm_k(self.k(src)), self.v(src)
        heads = self.num_heads

        def seq(a, b):
            return torch.cat([a, b], dim=1).reshape(n, three * h * w, heads, d // heads)

        q, k, v = seq(q, qs), seq(k, ks), seq(v, vs)
        q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return self.o(out.transpose(1, 2).reshape(n, three * h * w, d))


class InfCamBlockExtras(nn.Module):
    def __init__(self, dim: int, num_heads: int, eps: float = 1e-6, lora_rank: int = 0, lora_alpha: float = 16):
        super().__init__()
        self.self_attn_pre = TripletAttention(dim, num_heads, eps, lora_rank, lora_alpha)
        self.norm0 = nn.LayerNorm(dim, elementwise_affine=False)  # InfCam: nn.LayerNorm default eps 1e-5
        self.modulation0 = nn.Parameter(torch.randn(1, 6, dim) / dim ** 0.5)
        self.cam_encoder = nn.Linear(16, dim)
        self.zero_conv = nn.Conv3d(dim, dim, kernel_size=1)
        for p in (*self.cam_encoder.parameters(), *self.zero_conv.parameters()):
            nn.init.zeros_(p)

    @torch.no_grad()
    def init_from_block(self, block) -> None:
        """InfCam's training init: triplet attention and modulation0 start as copies of the Wan block's."""
        a = block.attn1
        for mine, theirs in ((self.self_attn_pre.q, a.to_q), (self.self_attn_pre.k, a.to_k),
                             (self.self_attn_pre.v, a.to_v), (self.self_attn_pre.o, a.to_out[0]),
                             (self.self_attn_pre.norm_q, a.norm_q), (self.self_attn_pre.norm_k, a.norm_k)):
            mine.load_state_dict(theirs.state_dict())
        self.modulation0.copy_(block.scale_shift_table)


def _identity(t: torch.Tensor) -> tuple:
    """(object id, in-place version) of a tensor, for cache keys. An inference tensor — what a node makes under
    ComfyUI's (and our executor's) inference mode — has no version counter (reading it raises): its id alone."""
    return (id(t), None if t.is_inference() else t._version)


def _normalised_k(k_px: torch.Tensor) -> torch.Tensor:
    """InfCam divides [fx, fy, cx, cy] by 2·cx (= the image width, principal point assumed central)."""
    return k_px / (k_px[:, 2:3] * 2)


class InfCamAdapter(nn.Module):
    """InfCam as a model adapter: the block additions (`infcam.N.*`) around any Wan2.1 DiT, which stays unchanged
    and may be shared with other handles. Registered on a VB_WAN handle as its `infcam` part; the one Wan sampler
    calls `predict()` instead of the plain DiT forward (see wan/sampler.py)."""

    def __init__(self, base_config, lora_rank: int = 0):
        super().__init__()
        dim = base_config.num_attention_heads * base_config.attention_head_dim
        self.infcam = nn.ModuleList(
            InfCamBlockExtras(dim, base_config.num_attention_heads, base_config.eps, lora_rank)
            for _ in range(base_config.num_layers))

    def predict(self, base, x: torch.Tensor, timestep: torch.Tensor, embeds: torch.Tensor, cond) -> torch.Tensor:
        """Sampler protocol: x [B,16,F,h,w] noisy target latents; cond.extra["infcam"] holds the source latents
        and cameras (one set, shared by every batch row: CFG's prompt and negative prompt)."""
        inp = cond.extra["infcam"]
        b = x.shape[0]
        key = ("rows", b, x.device, x.dtype)
        if key not in inp:  # the same tensor objects every step, so the sampling-grid cache hits
            inp[key] = (inp["source_latents"].to(x.device, x.dtype).expand(b, -1, -1, -1, -1),
                        *(inp[k].to(x.device).expand(b, *inp[k].shape[1:])
                          for k in ("cam_extrinsic", "intrinsic_src", "intrinsic_trg")))
        src, ext, k_src, k_trg = inp[key]
        # InfCam's pipeline hands the DiT its timestep in the compute dtype (bf16 rounds e.g. 994.9 to 996)
        return self.forward_with(base, x, src, timestep.to(x.dtype), embeds, ext, k_src, k_trg)

    def _camera_embeddings(self, extra, k_trg, k_src, ext):
        f = ext.shape[1]
        eye = torch.eye(3, dtype=ext.dtype, device=ext.device).reshape(1, 1, 9)
        ext_it = ext.reshape(*ext.shape[:2], 3, 4).clone()
        ext_it[..., :3] = eye.reshape(1, 1, 3, 3)
        ext_i0 = ext_it.clone()
        ext_i0[..., 3] = 0
        kt = k_trg[:, None].expand(-1, f, -1)
        ks = k_src[:, None].expand(-1, f, -1)
        enc = extra.cam_encoder
        return (enc(torch.cat([kt, ext], -1)), enc(torch.cat([kt, ext_it.flatten(2)], -1)),
                enc(torch.cat([ks, ext_i0.flatten(2)], -1)))

    def _sampling_grid(self, cam_ext, in_src, in_trg, k_src, k_trg, ext, b, gf, gh, gw, like):
        """One grid per camera (same for every block and step): H = K_trg · Rᵀ · K_src⁻¹ on the token grid.
        Cached on the identity of the camera tensors, so a sampler's 2×steps forwards compute it (and sync
        with the GPU for it) once."""
        key = (*_identity(cam_ext), *_identity(in_src), *_identity(in_trg), b, gf, gh, gw, like.device, like.dtype)
        cached = getattr(self, "_grid_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        Ks = infcam_grid_intrinsics(k_src.double().cpu(), 1.0, gw, gh)
        Kt = infcam_grid_intrinsics(k_trg.double().cpu(), 1.0, gw, gh)
        R = ext.double().cpu().reshape(b, gf, 3, 4)[..., :3]
        homs = infinite_homography(Ks[:, None], Kt[:, None], R).reshape(b * gf, 3, 3)
        grid = sampling_grid(homs, gh, gw, convention="infcam")[1].to(like.device, like.dtype)
        self._grid_cache = (key, grid, (cam_ext, in_src, in_trg))  # keep the keyed tensors alive (ids stay valid)
        return grid

    def _infcam_pre(self, extra, x, tproj, ctx):
        """InfCam additions of one block: returns x with the gated triplet-attention output added."""
        b, f, h, w, grid, k_trg, k_src, ext, rope3 = ctx
        d = x.shape[-1]
        shift0, scale0, gate0 = (extra.modulation0 + tproj.float()).chunk(6, dim=1)[:3]
        inp = (extra.norm0(x.float()) * (1 + scale0) + shift0).type_as(x)
        inp = inp.reshape(2, b, f, h, w, d)
        first = inp[1, :, :1].expand(b, f, h, w, d)
        warped = F.grid_sample(first.permute(0, 1, 4, 2, 3).reshape(b * f, d, h, w), grid, mode="bilinear",
                               padding_mode="border", align_corners=False)
        warped = warped.reshape(b, f, d, h, w).permute(0, 1, 3, 4, 2)
        # the 1×1×1 Conv3d is a per-token Linear; a GEMM on channels-last tokens is much faster than cuDNN conv3d
        warped = F.linear(warped, extra.zero_conv.weight.view(d, d), extra.zero_conv.bias)
        first = first + warped
        emb_rt, emb_it, emb_i0 = (e.to(inp.dtype) for e in self._camera_embeddings(extra, k_trg, k_src, ext))
        first = first + emb_it[:, :, None, None]
        trg = inp[0] + emb_rt[:, :, None, None]
        src = inp[1] + emb_i0[:, :, None, None]
        trip = torch.stack([trg, src, first], dim=2).reshape(b * f, 3, h, w, d)
        out = extra.self_attn_pre(trip, rope3).reshape(b * f, 3, h * w, d)[:, :2]
        gate = gate0[:b].repeat_interleave(f, dim=0)  # [(b f), 1, d]
        update = (gate[:, None] * out).view(b, f, 2, h * w, d).permute(2, 0, 1, 3, 4).reshape(2 * b, f * h * w, d)
        return (x.float() + update).type_as(x)

    def forward_with(self, base, latents: torch.Tensor, source_latents: torch.Tensor, timestep: torch.Tensor,
                     encoder_hidden_states: torch.Tensor, cam_extrinsic: torch.Tensor,
                     intrinsic_src: torch.Tensor, intrinsic_trg: torch.Tensor) -> torch.Tensor:
        """latents/source_latents [B, C, F, H, W]; timestep [B]; encoder_hidden_states [B, L, text_dim];
        cam_extrinsic [B, F, 12] (relative c2w 3×4 row-major per latent frame, OpenCV);
        intrinsic_src/trg [B, 4] pixels (fx, fy, cx, cy) of the video (InfCam assumes a central principal point)."""
        b, _, f, hh, ww = latents.shape
        pt, ph, pw = base.config.patch_size
        gf, gh, gw = f // pt, hh // ph, ww // pw
        x = torch.cat([latents, source_latents], dim=0)
        rope2 = base.rope(x)
        rope3 = base.rope(x.new_empty(1, x.shape[1], 3 * pt, hh, ww))  # (target, source, warped) as 3 frames
        hidden = base.patch_embedding(x).flatten(2).transpose(1, 2)
        t2 = timestep.reshape(-1).expand(b).repeat(2)
        ctx2 = encoder_hidden_states.repeat(2, 1, 1)
        temb, tproj, ctx2, _ = base.condition_embedder(t2, ctx2, None)
        tproj = tproj.unflatten(1, (6, -1))
        k_src = _normalised_k(intrinsic_src.float()).to(hidden.dtype)
        k_trg = _normalised_k(intrinsic_trg.float()).to(hidden.dtype)
        ext = cam_extrinsic.to(hidden.dtype)
        if ext.shape[1] != gf:
            raise ValueError(f"InfCam: {ext.shape[1]} camera poses for {gf} latent frames")
        grid = self._sampling_grid(cam_extrinsic, intrinsic_src, intrinsic_trg, k_src, k_trg, ext, b, gf, gh, gw,
                                   hidden)
        ctx = (b, gf, gh, gw, grid, k_trg, k_src, ext, rope3)
        for block, extra in zip(base.blocks, self.infcam):
            hidden = self._infcam_pre(extra, hidden, tproj, ctx)
            hidden = block(hidden, ctx2, tproj, rope2)
        shift, scale = (base.scale_shift_table.to(temb.device) + temb.unsqueeze(1)).chunk(2, dim=1)
        hidden = (base.norm_out(hidden.float()) * (1 + scale) + shift).type_as(hidden)
        hidden = base.proj_out(hidden[:b])
        hidden = hidden.reshape(b, gf, gh, gw, pt, ph, pw, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
        return hidden.flatten(6, 7).flatten(4, 5).flatten(2, 3)


class InfCamWan(InfCamAdapter):
    """diffusers WanTransformer3DModel + InfCam additions in one module (checkpoint layout, tests, benches).
    forward() returns the target velocity."""

    def __init__(self, base, lora_rank: int = 0):
        super().__init__(base.config, lora_rank)
        self.base = base

    @property
    def dtype(self):
        return self.base.dtype

    def init_from_base(self) -> "InfCamWan":
        for extra, block in zip(self.infcam, self.base.blocks):
            extra.init_from_block(block)
        return self

    def adapter(self) -> InfCamAdapter:
        """The additions alone (sharing their weights), to patch a handle's DiT."""
        out = InfCamAdapter.__new__(InfCamAdapter)
        nn.Module.__init__(out)
        out.infcam = self.infcam
        return out

    def forward(self, latents: torch.Tensor, source_latents: torch.Tensor, timestep: torch.Tensor,
                encoder_hidden_states: torch.Tensor, cam_extrinsic: torch.Tensor,
                intrinsic_src: torch.Tensor, intrinsic_trg: torch.Tensor) -> torch.Tensor:
        """latents/source_latents [B, C, F, H, W]; timestep [B]; encoder_hidden_states [B, L, text_dim];
        cam_extrinsic [B, F, 12] (relative c2w 3×4 row-major per latent frame, OpenCV);
        intrinsic_src/trg [B, 4] pixels (fx, fy, cx, cy) of the video (InfCam assumes a central principal point)."""
        return self.forward_with(self.base, latents, source_latents, timestep, encoder_hidden_states, cam_extrinsic,
                                 intrinsic_src, intrinsic_trg)


# --- checkpoint layout ----------------------------------------------------------------------------
def split_infcam_state(state: dict) -> tuple:
    """InfCam/DiffSynth keys → (diffusers base state, `infcam.N.*` state, lora_rank)."""
    from ..models.wan_keys import wan_to_diffusers_key

    base, extra, rank = {}, {}, 0
    for key, value in state.items():
        m = _EXTRA_RE.match(key)
        if m:
            extra[f"infcam.{m.group(1)}.{m.group(2)}{m.group(3) or ''}"] = value
            if key.endswith("q_lora.lora_A.weight"):
                rank = value.shape[0]
        else:
            base[wan_to_diffusers_key(key)] = value
    # LoRALinear keeps a second reference to q/k/v: its `original_layer` copies are redundant
    extra = {k: v for k, v in extra.items() if ".original_layer." not in k}
    return base, extra, rank


def infcam_to_diffsynth_state(model: InfCamWan) -> dict:
    """Our module → InfCam's published key layout (used to write test checkpoints)."""
    from ..models.wan_keys import diffusers_to_wan_key

    out = {}
    for key, value in model.base.state_dict().items():
        out[diffusers_to_wan_key(key)] = value
    for key, value in model.infcam.state_dict().items():  # includes the adapters' original_layer copies
        idx, rest = key.split(".", 1)
        out[f"blocks.{idx}.{rest}"] = value
    return out


def build_infcam_from_state(state: dict, attention_head_dim: int = 128, base=None, dtype=torch.float32) -> InfCamWan:
    """Build an InfCamWan from an InfCam checkpoint. If the checkpoint carries only the InfCam additions,
    `base` (a diffusers WanTransformer3DModel, e.g. Wan2.1-T2V-1.3B) supplies the rest."""
    base_state, extra_state, rank = split_infcam_state(state)
    shared_base = base is not None and not base_state
    if not extra_state:
        raise ValueError("not an InfCam checkpoint: no blocks.N.cam_encoder / zero_conv / self_attn_pre keys")
    if base is None:
        if "patch_embedding.weight" not in base_state:
            raise ValueError("InfCam checkpoint has no base Wan weights; connect a Wan model")
        from diffusers import WanTransformer3DModel

        dim, in_ch = base_state["patch_embedding.weight"].shape[:2]
        n_layers = 1 + max(int(k.split(".")[1]) for k in base_state if k.startswith("blocks."))
        cfg = dict(patch_size=tuple(base_state["patch_embedding.weight"].shape[2:]),
                   num_attention_heads=dim // attention_head_dim, attention_head_dim=attention_head_dim,
                   in_channels=in_ch, out_channels=base_state["proj_out.weight"].shape[0] // 4,
                   text_dim=base_state["condition_embedder.text_embedder.linear_1.weight"].shape[1],
                   freq_dim=base_state["condition_embedder.time_embedder.linear_1.weight"].shape[1],
                   ffn_dim=base_state["blocks.0.ffn.net.0.proj.weight"].shape[0], num_layers=n_layers,
                   cross_attn_norm="blocks.0.norm2.weight" in base_state)
        with torch.device("meta"):
            base = WanTransformer3DModel(**cfg)
        base.load_state_dict(base_state, strict=True, assign=True)
        base.rope = type(base.rope)(attention_head_dim, cfg["patch_size"], base.config.rope_max_seq_len)
    elif base_state:
        missing, unexpected = base.load_state_dict(base_state, strict=False)
        if unexpected:
            raise ValueError(f"InfCam checkpoint: unexpected base keys {unexpected[:5]}")
    model = InfCamWan(base, lora_rank=rank)
    missing, unexpected = model.infcam.load_state_dict(
        {k[len("infcam."):]: v for k, v in extra_state.items()}, strict=False)
    missing = [m for m in missing if ".original_layer." not in m]
    if missing or unexpected:
        raise ValueError(f"InfCam checkpoint: missing {missing[:5]}, unexpected {unexpected[:5]}")
    if rank > 0:  # tie the adapters' base layers to the triplet attention's own q/k/v (as InfCam does)
        for extra in model.infcam:
            sa = extra.self_attn_pre
            sa.q_lora.original_layer, sa.k_lora.original_layer, sa.v_lora.original_layer = sa.q, sa.k, sa.v
    if shared_base:  # the DiT belongs to a Wan handle: cast only InfCam's own additions
        cast_model(model.infcam, dtype)
        return model.eval()
    return cast_model(model, dtype).eval()


KEEP_FP32 = ("rope", "time_embedder", "scale_shift_table", "norm1", "norm2", "norm3", "modulation0")


def cast_model(model: nn.Module, dtype) -> nn.Module:
    """Cast to dtype but keep what diffusers keeps in fp32 for Wan (rotary tables, norms, modulation)."""
    model.to(dtype)
    if dtype in (torch.float16, torch.bfloat16):
        for name, module in model.named_modules():
            if name.rsplit(".", 1)[-1] in KEEP_FP32:
                module.float()
        for name, param in model.named_parameters():
            if name.rsplit(".", 1)[-1] in KEEP_FP32:
                param.data = param.data.float()
    return model


def load_infcam(path: str, attention_head_dim: int = 128, base=None, dtype=torch.bfloat16) -> InfCamWan:
    from safetensors.torch import load_file

    if not path.endswith(".safetensors"):
        raise ValueError(f"{path}: only .safetensors is read (convert InfCam's .ckpt once; see docs/vfx.md)")
    return build_infcam_from_state(load_file(path), attention_head_dim, base, dtype)
