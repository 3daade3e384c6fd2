"""Random-config Wan parts for tests and `bench --quick` (no weights needed).

The same constructors build the full-size architectures for GPU benchmarks (`size="a14b"` etc.), so the code
under test and the code benchmarked are identical; only the config differs.
"""
from __future__ import annotations

import torch

# Published configs (diffusers Wan-AI/*-Diffusers transformer/config.json), trimmed to what changes.
WAN_CONFIGS = {
    "tiny": dict(num_attention_heads=2, attention_head_dim=16, ffn_dim=64, num_layers=2, text_dim=32, freq_dim=32),
    "1.3b": dict(num_attention_heads=12, attention_head_dim=128, ffn_dim=8960, num_layers=30, text_dim=4096,
                 freq_dim=256),
    "5b": dict(num_attention_heads=24, attention_head_dim=128, ffn_dim=14336, num_layers=30, text_dim=4096,
               freq_dim=256),
    "a14b": dict(num_attention_heads=40, attention_head_dim=128, ffn_dim=13824, num_layers=40, text_dim=4096,
                 freq_dim=256),
}


def wan_transformer(size: str = "tiny", in_channels: int = 36, out_channels: int = 16, seed: int = 0,
                    dtype=torch.float32, device="cpu", **overrides):
    """Random WanTransformer3DModel. in_channels 36 = I2V (16 noise + 4 mask + 16 cond), 16 = T2V, 48 = TI2V-5B."""
    from diffusers import WanTransformer3DModel
    cfg = dict(WAN_CONFIGS[size])
    cfg.update(overrides)
    torch.manual_seed(seed)
    with torch.device(device):
        model = WanTransformer3DModel(in_channels=in_channels, out_channels=out_channels, cross_attn_norm=True,
                                      qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024, **cfg)
    return _cast(model, dtype).eval().requires_grad_(False)


def wan_vace_transformer(size: str = "tiny", seed: int = 0, vace_layers=None, dtype=torch.float32, device="cpu",
                         **overrides):
    from diffusers import WanVACETransformer3DModel
    cfg = dict(WAN_CONFIGS[size])
    cfg.update(overrides)
    if vace_layers is None:
        vace_layers = list(range(0, cfg["num_layers"], 2))
    torch.manual_seed(seed)
    with torch.device(device):
        model = WanVACETransformer3DModel(in_channels=16, out_channels=16, cross_attn_norm=True,
                                          qk_norm="rms_norm_across_heads", eps=1e-6, vace_layers=vace_layers,
                                          vace_in_channels=96, **cfg)
    return _cast(model, dtype).eval().requires_grad_(False)


def wan_vae(tiny: bool = True, seed: int = 0, dtype=torch.float32):
    """Wan2.1 VAE (16 latent channels, 4x temporal, 8x spatial); tiny = few channels, same strides."""
    from diffusers import AutoencoderKLWan
    torch.manual_seed(seed)
    if tiny:
        vae = AutoencoderKLWan(base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, attn_scales=[],
                               temperal_downsample=[False, True, True])
    else:
        vae = AutoencoderKLWan()
    # Wan's own VAE code zero-initialises the mid-block attention projection; diffusers' random init does not,
    # which would make a random VAE mix every pixel with every other one.
    with torch.no_grad():
        for name, p in vae.named_parameters():
            if ".attentions." in name and ".proj." in name:
                p.zero_()
    return _cast(vae, dtype).eval().requires_grad_(False)


def _cast(model, dtype):
    return model if dtype == torch.float32 else model.to(dtype)
