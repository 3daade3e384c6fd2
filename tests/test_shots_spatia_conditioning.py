"""Spatia's latent layout through the one Wan sampler: reference + history latents held clean at timestep 0,
references at temporal RoPE positions -R..-1 and rows h..2h (upstream `ref_freqs`), references dropped at the end."""
import torch

from vibeboard.shots import tiny_models
from vibeboard.shots.spatia import spatia_conditioning
from vibeboard.wan import sampler as S
from vibeboard.wan.handle import WanHandle


def test_references_and_history_held_at_timestep_zero_with_shifted_rope():
    torch.manual_seed(0)
    model = tiny_models.wan_transformer(in_channels=16)
    wan = WanHandle.from_modules(transformer=model)
    refs, hist = torch.randn(1, 16, 2, 4, 4), torch.randn(1, 16, 1, 4, 4)
    cond = spatia_conditioning(torch.randn(1, 6, 32), torch.randn(1, 6, 32), refs, 3, hist)
    seen = []
    hook = model.register_forward_pre_hook(lambda m, a, k: seen.append((k["hidden_states"].clone(),
                                                                        k["timestep"].clone())), with_kwargs=True)
    try:
        out = S.sample(wan, cond, S.SamplerSettings(steps=3, cfg=2.0), (1, 16, 3, 4, 4), normalized=True)
    finally:
        hook.remove()
    assert out.shape == (1, 16, 3, 4, 4)                                   # references dropped
    assert torch.equal(out[:, :, :1], hist)                                 # history frame exactly kept
    per_frame = 2 * 2
    for x, t in seen:
        assert torch.equal(x[:1, :, :2], refs) and torch.equal(x[:1, :, 2:3], hist)   # held at every model call
        assert t[:, :3 * per_frame].eq(0).all() and t[:, 3 * per_frame:].gt(0).all()  # per-token timestep 0
    rope = model.rope
    assert rope.last_frame_positions.tolist() == [-2, -1, 0, 1, 2]          # ref_freqs[0][-R:] = positions -R..-1
    assert rope.frame_positions is None and rope.h_offsets is None          # restored after sampling
    assert cond.rope_h_offsets.tolist() == [2, 2, 0, 0, 0]                  # rows h..2h for the references
