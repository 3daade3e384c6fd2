"""The one Wan RoPE module: reproduces diffusers' table by default and shifts only what is asked."""
import torch

from vibeboard.models import tiny
from vibeboard.wan import rope


def test_default_positions_match_diffusers_and_shifts_change_output():
    model = tiny.build_transformer("t2v", 0)
    x = torch.randn(1, 16, 3, 4, 6)
    base_cos, base_sin = model.rope(x)
    stock = model.rope
    mine = rope.PositionedWanRope(stock)
    mine.frame_positions = torch.arange(3)
    cos, sin = mine(x)
    assert torch.equal(cos, base_cos) and torch.equal(sin, base_sin)   # bit-identical at 0..F-1
    emb, t = torch.randn(1, 8, 32), torch.tensor([400.0])
    with torch.no_grad():
        ref = model(x, t, emb).sample
        with rope.frame_positions(model, [0, 1, 2]):
            assert torch.equal(model(x, t, emb).sample, ref)
        with rope.frame_positions(model, rope.memory_frame_positions(1, 2, gap=5)):
            shifted = model(x, t, emb).sample
    assert rope.memory_frame_positions(2, 3, 4).tolist() == [-8, -4, 0, 1, 2]
    assert not torch.allclose(shifted, ref)
    assert model.rope.frame_positions is None and model.rope.original is stock  # positions restored
    # a spatial offset on frame 0 only changes the angles of frame 0's tokens (Spatia's shifted references)
    mine = rope.PositionedWanRope(stock)
    mine.h_offsets = torch.tensor([3, 0, 0])
    c2, _ = mine(x)
    per_frame = 2 * 3
    assert not torch.allclose(c2[:, :per_frame], base_cos[:, :per_frame])
    torch.testing.assert_close(c2[:, per_frame:], base_cos[:, per_frame:], rtol=0, atol=1e-6)
    # an offset of 0 equals the stock rows
    mine.h_offsets = torch.zeros(3)
    torch.testing.assert_close(mine(x)[0], base_cos, rtol=0, atol=1e-6)
