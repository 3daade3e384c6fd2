"""Custom RoPE positions reproduce diffusers' table by default and shift only what is asked."""
import torch

from vibeboard.models import tiny
from vibeboard.wan import rope


def test_default_positions_match_diffusers_and_shifts_change_output():
    model = tiny.build_transformer("t2v", 0)
    x = torch.randn(1, 16, 3, 4, 6)
    base_cos, base_sin = model.rope(x)
    mine = rope.PositionedRope(model.rope)
    cos, sin = mine(x)
    torch.testing.assert_close(cos, base_cos, rtol=0, atol=1e-6)
    torch.testing.assert_close(sin, base_sin, rtol=0, atol=1e-6)
    emb, t = torch.randn(1, 8, 32), torch.tensor([400.0])
    with torch.no_grad():
        ref = model(x, t, emb).sample
        with rope.positions(model, t_positions=[0, 1, 2]):
            torch.testing.assert_close(model(x, t, emb).sample, ref, rtol=1e-5, atol=1e-5)
        with rope.positions(model, t_positions=rope.memory_positions(1, 2, gap=5)):
            shifted = model(x, t, emb).sample
    assert rope.memory_positions(2, 3, 4) == [-8, -4, 0, 1, 2]
    assert not torch.allclose(shifted, ref)
    assert model.rope.__class__.__name__ == "WanRotaryPosEmbed"  # restored
    # a spatial offset on frame 0 only changes the angles of frame 0's tokens
    c2, _ = rope.PositionedRope(model.rope, h_offsets=[3, 0, 0])(x)
    per_frame = 2 * 3
    assert not torch.allclose(c2[:, :per_frame], base_cos[:, :per_frame])
    torch.testing.assert_close(c2[:, per_frame:], base_cos[:, per_frame:], rtol=0, atol=1e-6)
