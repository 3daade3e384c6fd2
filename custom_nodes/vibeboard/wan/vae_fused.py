"""The decoder patches behind `vae_fast.DecodeOptions.fused_norm` and `.subpixel_upsample` (installed on the module
instances while decoding, removed after, like vae_fast's bf16 ops).

- fused_norm: diffusers' residual block runs norm1 → SiLU → causal conv → norm2 → SiLU → conv (+ shortcut), the
  head norm_out → SiLU → conv_out. Each norm + SiLU here is one Triton pass (`vae_kernels.rms_norm`) that writes its
  result straight into the causal conv's input buffer, behind the previous chunk's cached frames, so neither the
  norm's several passes, the SiLU pass nor the `[cache, x]` concatenation copy remain. The mid-block attention's norm
  (no SiLU after it) goes through the same kernel.
- subpixel_upsample: the upsamplers' nearest 2x upsample followed by a 3x3 conv is one conv with four 2x2 kernels (one
  per output pixel parity) on the low-resolution frame, interleaved after.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .vae_fast import CACHE_T, forwards_by_class, patched_forwards


# ---- fused RMS norm + SiLU (fused_norm) ----------------------------------------------------------------------

def _fused_norm_forward(self, x):
    from .vae_kernels import rms_norm
    if not self.channel_first:
        return type(self).forward(self, x)
    return rms_norm(x, self.gamma, self.bias, self.scale)


def _norm_silu_conv(norm, conv, x, feat_cache, feat_idx):
    """conv(SiLU(norm(x))) with the causal cache bookkeeping of diffusers' residual block and decoder head.

    diffusers normalises (several passes), applies SiLU, clones the last frames as the next chunk's cache, then
    the conv concatenates [cache, x] (a full copy) and pads. Here the kernel writes SiLU(norm(x)) once, straight
    into the conv's input buffer behind the previous chunk's cached frames (or the causal zero frames), and the
    conv pads space itself. The next cache is the same frames diffusers keeps."""
    from .vae_kernels import rms_norm
    t_pad = conv._padding[4]
    idx = feat_idx[0] if feat_cache is not None else None
    prev = feat_cache[idx] if feat_cache is not None else None
    if t_pad != CACHE_T or not norm.channel_first or (prev is not None and prev.shape[2] > t_pad):
        y = F.silu(norm(x))   # not the decoder's shape: diffusers' own order of calls
        if feat_cache is None:
            return conv(y)
        cache = y[:, :, -CACHE_T:].clone()
        if cache.shape[2] < CACHE_T and prev is not None:
            cache = torch.cat([prev[:, :, -1:].to(cache.device), cache], dim=2)
        out = conv(y, prev)
        feat_cache[idx] = cache
        feat_idx[0] += 1
        return out
    b, c, t, h, w = x.shape
    fmt = torch.channels_last_3d if (x.is_contiguous(memory_format=torch.channels_last_3d)
                                     and not x.is_contiguous()) else torch.contiguous_format
    buf = torch.empty((b, c, t_pad + t, h, w), dtype=x.dtype, device=x.device, memory_format=fmt)
    n_prev = 0 if prev is None else prev.shape[2]
    if n_prev < t_pad:
        buf[:, :, :t_pad - n_prev].zero_()
    if n_prev:
        buf[:, :, t_pad - n_prev:t_pad].copy_(prev)
    rms_norm(x, norm.gamma, norm.bias, norm.scale, silu=True, out=buf[:, :, t_pad:])
    if feat_cache is not None:
        # diffusers keeps the last CACHE_T frames of SiLU(norm(x)), led by the previous cache's last frame when x
        # has fewer: the same as the buffer's tail (a lone first frame is kept alone, as diffusers does)
        keep = CACHE_T if (t >= CACHE_T or prev is not None) else t
        feat_cache[idx] = buf[:, :, -keep:].clone()
        feat_idx[0] += 1
    # the conv module's own forward would pad time again; its weights are used as they are (no hooks in the VAE)
    return F.conv3d(buf, conv.weight, conv.bias, conv.stride, (0, conv._padding[2], conv._padding[0]),
                    conv.dilation, conv.groups)


def _fused_residual_forward(self, x, feat_cache=None, feat_idx=[0]):   # noqa: B006 - diffusers' signature
    if self.training and self.dropout.p > 0:
        return type(self).forward(self, x, feat_cache, feat_idx)
    h = self.conv_shortcut(x)
    x = _norm_silu_conv(self.norm1, self.conv1, x, feat_cache, feat_idx)
    x = _norm_silu_conv(self.norm2, self.conv2, x, feat_cache, feat_idx)   # dropout: identity in eval
    return x.add_(h)   # x is the conv's fresh output


def _fused_decoder_forward(self, x, feat_cache=None, feat_idx=[0], first_chunk=False):   # noqa: B006
    """WanDecoder3d.forward with its head (norm_out → SiLU → conv_out) through `_norm_silu_conv`."""
    if feat_cache is not None:
        idx = feat_idx[0]
        cache_x = x[:, :, -CACHE_T:, :, :].clone()
        if cache_x.shape[2] < 2 and feat_cache[idx] is not None:
            cache_x = torch.cat([feat_cache[idx][:, :, -1, :, :].unsqueeze(2).to(cache_x.device), cache_x], dim=2)
        x = self.conv_in(x, feat_cache[idx])
        feat_cache[idx] = cache_x
        feat_idx[0] += 1
    else:
        x = self.conv_in(x)
    x = self.mid_block(x, feat_cache=feat_cache, feat_idx=feat_idx)
    for up_block in self.up_blocks:
        x = up_block(x, feat_cache=feat_cache, feat_idx=feat_idx, first_chunk=first_chunk)
    return _norm_silu_conv(self.norm_out, self.conv_out, x, feat_cache, feat_idx)


def fused_norms(vae, on: bool):
    """The fused forwards on the decoder's residual blocks, its head and every RMS norm (the mid-block attention's
    has no SiLU after it), while decoding; the model is left as it was."""
    if not on:
        return patched_forwards(())
    from diffusers.models.autoencoders import autoencoder_kl_wan as W
    return patched_forwards(forwards_by_class(vae, (
        (W.WanResidualBlock, _fused_residual_forward), (W.WanDecoder3d, _fused_decoder_forward),
        (W.WanRMS_norm, _fused_norm_forward))))


# ---- nearest 2x upsample + 3x3 conv as sub-pixel 2x2 convs (subpixel_upsample) --------------------------------

# Output row 2i+a of conv3x3(upsample2x(x)) reads input rows {i-1, i} (a = 0) or {i, i+1} (a = 1): the 3x3 taps
# fold into 2 per parity. _FOLD[a][r, k]: kernel row k adds into the 2-tap kernel's row r (the same for columns).
_FOLD = (((1, 0, 0), (0, 1, 1)),
         ((1, 1, 0), (0, 0, 1)))


def _subpixel_weight(conv: torch.nn.Conv2d) -> torch.Tensor:
    """[4·Co, Ci, 2, 2]: output channel group a·2+b holds the kernel of output pixels (2i+a, 2j+b)."""
    fold = torch.tensor(_FOLD, dtype=torch.float32, device=conv.weight.device)
    w = torch.einsum("ark,bsl,oikl->aboirs", fold, fold, conv.weight.float())
    return w.reshape(4 * conv.out_channels, conv.in_channels, 2, 2).to(conv.weight.dtype)


def _subpixel_forward(conv: torch.nn.Conv2d, weights: dict, x: torch.Tensor) -> torch.Tensor:
    """conv(nearest_upsample_2x(x)) for x [N, Ci, h, w]; `weights` caches the folded kernel per memory format."""
    n, _, h, w = x.shape
    # the layout the channels_last option gave the conv's weight (it is set after this patch is installed)
    fmt = torch.channels_last if conv.weight.is_contiguous(memory_format=torch.channels_last) \
        else torch.contiguous_format
    if fmt not in weights:
        weights[fmt] = _subpixel_weight(conv).contiguous(memory_format=fmt)
    weight = weights[fmt]
    bias = conv.bias.repeat(4) if conv.bias is not None else None
    # padded by 1: the (h+1) x (w+1) output holds parity a's row i at row i+a
    y = F.conv2d(x.contiguous(memory_format=fmt), weight, bias, padding=1)
    co = conv.out_channels
    out = torch.empty((n, co, 2 * h, 2 * w), dtype=y.dtype, device=y.device, memory_format=fmt)
    for a in (0, 1):
        for b in (0, 1):
            g = 2 * a + b
            out[:, :, a::2, b::2].copy_(y[:, g * co:(g + 1) * co, a:a + h, b:b + w])
    return out


def _is_nearest_2x_conv3x3(seq) -> bool:
    if not isinstance(seq, torch.nn.Sequential) or len(seq) != 2:
        return False
    up, conv = seq
    if not isinstance(up, torch.nn.Upsample) or up.size is not None or up.mode not in ("nearest", "nearest-exact"):
        return False
    scale = up.scale_factor if isinstance(up.scale_factor, tuple) else (up.scale_factor,) * 2
    return (tuple(float(f) for f in scale) == (2.0, 2.0)
            and type(conv) is torch.nn.Conv2d and conv.kernel_size == (3, 3) and conv.padding == (1, 1)
            and conv.stride == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1)


def subpixel_upsamplers(vae, on: bool):
    """The sub-pixel forward on the decoder's upsamplers' (upsample, conv) pairs while decoding."""
    pairs = [(m.resample, lambda x, conv=m.resample[1], weights={}: _subpixel_forward(conv, weights, x))
             for m in (vae.decoder.modules() if on else ())
             if str(getattr(m, "mode", "")).startswith("upsample")
             and _is_nearest_2x_conv3x3(getattr(m, "resample", None))]
    return patched_forwards(pairs)
