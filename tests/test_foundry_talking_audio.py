"""MultiTalk/InfiniteTalk audio adapter in its published key layout on a tiny Wan I2V: loads, patches a copy,
is exactly the plain model at scale 0, and a latent frame responds only to its own audio tokens."""
import pytest
import torch

from vibeboard.foundry import talking_audio as A
from vibeboard.models import tiny


def _published_file_state(blocks=2, dim=32, audio_dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    proj = A.AudioProjModel(intermediate_dim=8, output_dim=audio_dim, context_tokens=4)
    state = {f"audio_proj.{k}": torch.randn(v.shape, generator=g) * 0.02 for k, v in proj.state_dict().items()}
    for i in range(blocks):
        for name, shape in (("audio_cross_attn.q_linear.weight", (dim, dim)), ("audio_cross_attn.q_linear.bias", (dim,)),
                            ("audio_cross_attn.kv_linear.weight", (2 * dim, audio_dim)),
                            ("audio_cross_attn.kv_linear.bias", (2 * dim,)),
                            ("audio_cross_attn.proj.weight", (dim, dim)), ("audio_cross_attn.proj.bias", (dim,)),
                            ("norm_x.weight", (dim,)), ("norm_x.bias", (dim,))):
            state[f"blocks.{i}.{name}"] = torch.randn(shape, generator=g) * 0.3 + (1.0 if name == "norm_x.weight" else 0)
    return state


def test_windows_and_latent_groups_follow_the_published_layout():
    feats = torch.arange(9, dtype=torch.float32).view(9, 1, 1).expand(9, 12, 768)
    win = A.audio_windows(feats)
    assert win.shape == (9, 5, 12, 768) and win[0, :, 0, 0].tolist() == [0, 0, 0, 1, 2]
    first, latter = A.latent_frame_groups(win)
    assert first.shape == (1, 1, 5, 12, 768) and latter.shape == (1, 2, 8, 12, 768)
    # latent frame 1 covers pixel frames 1..4: frame 1 at offsets −2..0 (clamped) + centres of 2, 3 + frame 4 at 0..+2
    assert latter[0, 0, :, 0, 0].tolist() == [0, 0, 1, 2, 3, 4, 5, 6]


def test_adapter_loads_patches_and_is_per_frame():
    proj_state, blocks = A.split_adapter_state(_published_file_state())
    proj = A.load_audio_proj(proj_state)
    first, latter = A.latent_frame_groups(A.audio_windows(torch.randn(9, 12, 768)))
    tokens = proj(first, latter)
    assert tokens.shape == (1, 3, 4, 16)
    model, plain = tiny.build_transformer("i2v"), tiny.build_transformer("i2v")
    state = A.patch_audio_adapter(model, blocks)
    x = torch.randn(1, 36, 3, 4, 4)
    kw = dict(timestep=torch.tensor([500.0]), encoder_hidden_states=torch.randn(1, 512, 32),
              encoder_hidden_states_image=torch.randn(1, 5, 24), return_dict=False)
    with torch.no_grad():
        ref = plain(x, **kw)[0]
        state.tokens, state.scale = tokens, 0.0
        assert torch.allclose(model(x, **kw)[0], ref, atol=1e-6)
        state.scale = 1.0
        a = model(x, **kw)[0]
        changed = tokens.clone()
        changed[:, 0] += 1.0
        state.tokens = changed
        b = model(x, **kw)[0]
    assert not torch.allclose(a, ref)
    assert not torch.allclose(a[:, :, 0], b[:, :, 0])


def test_a_file_without_audio_weights_is_refused():
    with pytest.raises(A.AudioAdapterError, match="not a MultiTalk"):
        A.split_adapter_state({"blocks.0.self_attn.q.weight": torch.zeros(2, 2)})
