"""The Wan sampler's generic long-clip tools: context windows (schedule, per-window conditioning, linear blending)
and multi-term guidance. Plain CFG written as a guidance spec, and one window covering the clip, give exactly the
numbers of the plain sampler."""
import torch

from vibeboard.models import tiny
from vibeboard.models.vram import VramManager
from vibeboard.wan import conditioning as C
from vibeboard.wan import sampler as S
from vibeboard.wan import windows as W
from vibeboard.wan.handle import WanHandle

SHAPE = (1, 16, 4, 4, 4)


def _setup():
    handle = WanHandle.from_modules(VramManager(device="cpu"), dtype=torch.float32, transformer=tiny.build_transformer(),
                                    vae=tiny.build_vae())
    g = torch.Generator().manual_seed(0)
    return handle, torch.randn(1, 512, 32, generator=g), torch.randn(1, 512, 32, generator=g)


def _sample(handle, cond, **kw):
    settings = S.SamplerSettings(steps=2, cfg=4.0, scheduler="euler", seed=3, batch_cfg=False, **kw)
    return S.sample(handle, cond, settings, SHAPE, normalized=True)


def test_plain_cfg_as_a_guidance_spec_is_bit_exact():
    handle, pos, neg = _setup()
    plain = _sample(handle, C.WanConditioning(prompt_embeds=pos, negative_embeds=neg))
    spec = C.Guidance({"cond": C.GuidancePass(pos), "uncond": C.GuidancePass(neg)}, "uncond",
                      [(4.0, "cond", "uncond")])
    assert torch.equal(_sample(handle, C.WanConditioning(prompt_embeds=pos, guidance=spec)), plain)
    weaker = C.Guidance(spec.passes, "uncond", [(2.0, "cond", "uncond")])
    assert not torch.equal(_sample(handle, C.WanConditioning(prompt_embeds=pos, guidance=weaker)), plain)


def test_one_window_over_the_whole_clip_is_the_plain_sampler():
    handle, pos, neg = _setup()
    plain = _sample(handle, C.WanConditioning(prompt_embeds=pos, negative_embeds=neg))
    windowed = C.WanConditioning(prompt_embeds=pos, negative_embeds=neg, windows=W.ContextWindows(8, 2))
    assert torch.equal(_sample(handle, windowed), plain)
    two = C.WanConditioning(prompt_embeds=pos, negative_embeds=neg, windows=W.ContextWindows(3, 2))
    assert not torch.equal(_sample(handle, two), plain)   # two windows of 3 frames see less context


def test_window_schedule_and_per_window_conditioning():
    # upstream FlashPortrait's context_scheduler(size 4, overlap 2) over 9 frames, its last window aligned to the end
    assert W.ContextWindows(4, 2).spans(9) == [(0, 4), (2, 6), (4, 8), (5, 9)]
    assert W.ContextWindows(4, 9).spans(9) == [(0, 4), (1, 5), (2, 6), (3, 7), (4, 8), (5, 9)]  # overlap clamped
    full = torch.arange(6.0).view(1, 1, 6, 1, 1).expand(1, 20, 6, 2, 2)
    own = torch.zeros(1, 20, 3, 2, 2)
    cond = C.WanConditioning(prompt_embeds=torch.zeros(1, 2, 3), concat_latents=full,
                             rope_positions=torch.arange(6))
    cut = W.slice_frames(cond, 2, 5, 6)
    assert torch.equal(cut.concat_latents[0, 0, :, 0, 0], torch.tensor([2.0, 3.0, 4.0]))
    assert cut.rope_positions.tolist() == [2, 3, 4]
    keep = W.slice_frames(C.WanConditioning(prompt_embeds=cond.prompt_embeds, concat_latents=own), 2, 5, 6)
    assert keep.concat_latents is own   # a window-sized condition (a fresh clip per window) stays


def test_blending_ramps_linearly_or_overwrites():
    def const(s, e):
        return torch.full((1, 1, e - s), 10.0 if s else 0.0)
    blended = W.blend_windows(const, 6, [(0, 4), (1, 6)])
    assert torch.allclose(blended[0, 0], torch.tensor([0.0, 0.0, 5.0, 10.0, 10.0, 10.0]))
    assert W.blend_windows(const, 6, [(0, 4), (1, 6)], blend=False)[0, 0].tolist() == [0, 10, 10, 10, 10, 10]
