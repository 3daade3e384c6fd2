"""The step cache (EasyCache-style, opt-in, lossy) inside the one Wan sampling loop: threshold 0 is the plain
sampler bit for bit; a high threshold skips forwards, only at allowed steps, with CFG's two passes skipped together,
and the skip ratio is reported."""
import torch

from vibeboard.models import tiny
from vibeboard.wan import conditioning as C
from vibeboard.wan import sampler as S
from vibeboard.wan.handle import WanHandle
from vibeboard.wan.step_cache import StepCache

SHAPE = (1, 16, 2, 4, 4)


class CallCounter:
    """Counts DiT forwards and their batch rows with a forward hook (independent of the sampler's own stats)."""

    def __init__(self, model):
        self.calls = 0
        self.handle = model.register_forward_hook(self._hook)

    def _hook(self, module, args, kwargs_or_out, *rest):
        self.calls += 1

    def close(self):
        self.handle.remove()


def _setup(seed=0):
    model = tiny.build_transformer("t2v", seed)
    wan = WanHandle.from_modules(transformer=model, vae=tiny.build_vae(0))
    g = torch.Generator().manual_seed(seed)
    cond = C.WanConditioning(prompt_embeds=torch.randn(1, 8, 32, generator=g),
                             negative_embeds=torch.randn(1, 8, 32, generator=g))
    return model, wan, cond


def test_threshold_zero_is_bit_identical_to_no_cache():
    model, wan, cond = _setup()
    plain = S.sample(wan, cond, S.SamplerSettings(steps=8, cfg=4.0), SHAPE, normalized=True)
    stats = {}
    zero = S.sample(wan, cond, S.SamplerSettings(steps=8, cfg=4.0, step_cache=0.0), SHAPE, normalized=True,
                    stats=stats)
    assert torch.equal(plain, zero)
    assert stats["forwards"] == 8 and "skipped" not in stats


def test_high_threshold_skips_only_allowed_steps_and_reports_the_ratio():
    model, wan, cond = _setup()
    steps = 10
    plain = S.sample(wan, cond, S.SamplerSettings(steps=steps, cfg=4.0), SHAPE, normalized=True)
    counter = CallCounter(model)
    stats = {}
    try:
        cached = S.sample(wan, cond, S.SamplerSettings(steps=steps, cfg=4.0, step_cache=1.0e6), SHAPE,
                          normalized=True, stats=stats)
    finally:
        counter.close()
    warmup = StepCache(1.0, steps).warmup
    assert warmup == 2
    # never the first `warmup` steps nor the last one; everything in between with an absurd threshold
    assert stats["skipped_steps"] == list(range(warmup, steps - 1))
    assert stats["skipped"] == steps - 1 - warmup and stats["skip_ratio"] == (steps - 1 - warmup) / steps
    assert counter.calls == stats["forwards"] == steps - stats["skipped"]   # CFG batched: one call per step
    assert S.LAST_STATS["skip_ratio"] == stats["skip_ratio"]
    assert not torch.equal(cached, plain) and torch.isfinite(cached).all()


def test_cfg_passes_are_skipped_together_when_they_run_separately():
    model, wan, cond = _setup()
    counter = CallCounter(model)
    stats = {}
    try:
        S.sample(wan, cond, S.SamplerSettings(steps=6, cfg=4.0, batch_cfg=False, step_cache=1.0e6), SHAPE,
                 normalized=True, stats=stats)
    finally:
        counter.close()
    assert stats["skipped"] == 6 - 1 - 2
    assert counter.calls == stats["forwards"] == 2 * (6 - stats["skipped"])  # cond + uncond, or neither


def test_moderate_threshold_reuses_some_steps_and_audit_measures_its_error():
    model, wan, cond = _setup()
    plain = S.sample(wan, cond, S.SamplerSettings(steps=12, cfg=4.0), SHAPE, normalized=True)
    stats = {}
    audited = S.sample(wan, cond, S.SamplerSettings(steps=12, cfg=4.0, step_cache=0.3), SHAPE, normalized=True,
                       stats=stats, audit_cache=True)
    skipped = stats["skipped_steps"]
    assert 0 < len(skipped) < 12 - 3 and all(3 <= i < 11 for i in skipped)
    assert 0 < stats["cache_rel_err"] < 1.0
    assert float((audited - plain).norm() / plain.norm()) < 0.5   # lossy, not wild


def test_step_cache_policy_accumulates_and_resets():
    cache = StepCache(0.5, steps=6, warmup=2)
    x0, x1 = torch.zeros(4), torch.ones(4)
    assert cache.reuse(0, x0) is None
    cache.store(x0, torch.full((4,), 2.0))
    assert cache.reuse(1, x1) is None
    cache.store(x1, torch.full((4,), 3.0))                   # k = |3-2| / |1-0| = 1, residual 2
    assert cache.k == 1.0
    x2 = torch.full((4,), 1.3)                                # est. change 1 · 0.3 / 3 = 0.1 < 0.5 → reuse
    torch.testing.assert_close(cache.reuse(2, x2), x2 + 2.0)
    x3 = torch.full((4,), 5.0)                                # + 1 · 3.7 / 3 > 0.5 → compute, sum back to 0
    assert cache.reuse(3, x3) is None and cache.accumulated == 0.0
    cache.store(x3, torch.full((4,), 4.0))
    assert cache.reuse(5, torch.full((4,), 5.0)) is None     # the last step always runs
    assert cache.skipped == [2]
    cache.reset()
    assert cache.k is None and cache.reuse(3, x3) is None


def test_multi_term_guidance_is_cached_as_one_prediction_and_its_passes_counted():
    """Multi-term guidance (FlashPortrait's three passes): every pass runs or none, and the stats count them all
    (batch_cfg: the three passes in one forward of three rows; off: three forwards)."""
    model, wan, cond = _setup()
    g = torch.Generator().manual_seed(3)
    passes = {n: C.GuidancePass(torch.randn(1, 8, 32, generator=g)) for n in ("a", "b", "c")}
    cond = C.WanConditioning(prompt_embeds=passes["a"].embeds,
                             guidance=C.Guidance(passes, "c", [(3.0, "a", "b"), (2.0, "b", "c")]))
    for batch_cfg, calls_per_step in ((True, 1), (False, 3)):
        counter = CallCounter(model)
        stats = {}
        try:
            S.sample(wan, cond, S.SamplerSettings(steps=6, step_cache=1.0e6, batch_cfg=batch_cfg), SHAPE,
                     normalized=True, stats=stats)
        finally:
            counter.close()
        assert stats["skipped"] == 6 - 1 - 2
        assert counter.calls == stats["forwards"] == calls_per_step * (6 - stats["skipped"])
        assert stats["rows"] == 3 * (6 - stats["skipped"])
