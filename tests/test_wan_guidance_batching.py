"""The one sampler batches guidance passes into one forward (batch_cfg): plain CFG and passes that change nothing
in `extra` always; passes with their own model inputs (FlashPortrait's expression scale, InfiniteTalk's audio on/off)
when every per-call input hook reads one pass per batch row; otherwise one forward per pass. Batched and one by one
agree; plain CFG through the generic path is the sampler's CFG formula."""
import pytest
import torch

from vibeboard.foundry import flashportrait as fp
from vibeboard.foundry import flashportrait_wan as fw
from vibeboard.models import tiny
from vibeboard.wan import conditioning as C
from vibeboard.wan import sampler as S


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(x=torch.randn(1, 16, 3, 4, 4, generator=g), t=torch.tensor([600.0]),
                prompt=torch.randn(1, 512, 32, generator=g), negative=torch.randn(1, 512, 32, generator=g),
                image=torch.randn(1, 5, 24, generator=g), concat=torch.randn(1, 20, 3, 4, 4, generator=g),
                tokens=torch.randn(1, 3, 24, 16, generator=g))


def _counting(model):
    rows = []
    hook = model.register_forward_pre_hook(lambda m, a, kw: rows.append(kw["hidden_states"].shape[0]),
                                           with_kwargs=True)
    return rows, hook


def test_plain_cfg_is_the_two_pass_guidance_batched_or_not():
    model = tiny.build_transformer("t2v", seed=1)
    d = _inputs()
    cond = C.WanConditioning(prompt_embeds=d["prompt"], negative_embeds=d["negative"])
    rows, hook = _counting(model)
    with torch.no_grad():
        batched = S.guided(model, d["x"], d["t"], cond, 4.0, torch.float32, batch_cfg=True)
        single = S.guided(model, d["x"], d["t"], cond, 4.0, torch.float32, batch_cfg=False)
        pos = S.predict(model, d["x"], d["t"], d["prompt"], cond, torch.float32)
        neg = S.predict(model, d["x"], d["t"], d["negative"], cond, torch.float32)
    hook.remove()
    assert rows == [2, 1, 1, 1, 1]
    assert torch.equal(single, neg + 4.0 * (pos - neg))
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("text_cfg,emo_cfg,passes", [(2.5, 3.0, 3), (1.0, 3.0, 2), (2.5, 1.0, 2)])
def test_flashportrait_passes_share_one_forward_with_per_row_expression_scales(text_cfg, emo_cfg, passes):
    model = tiny.build_transformer("i2v", seed=3)
    g = torch.Generator().manual_seed(4)
    emo = {i: {"k": torch.randn(32, 16, generator=g) * 0.3, "v": torch.randn(32, 16, generator=g) * 0.3}
           for i in range(len(model.blocks))}
    fp.patch_expression_attention(model, emo)
    d = _inputs(1)
    tokens, mask = fp.per_latent_frame(torch.randn(1, 9, 6, 16, generator=g))
    cond = C.WanConditioning(prompt_embeds=d["prompt"], image_embeds=d["image"], concat_latents=d["concat"],
                             guidance=fw.expression_guidance(d["prompt"], d["negative"], text_cfg, emo_cfg),
                             extra={"expression_tokens": tokens, "expression_mask": mask})
    rows, hook = _counting(model)
    with torch.no_grad():
        batched = S.guided_passes(model, d["x"], d["t"], cond, torch.float32, batch=True)
        single = S.guided_passes(model, d["x"], d["t"], cond, torch.float32, batch=False)
        no_expression = S.guided_passes(model, d["x"], d["t"], C.WanConditioning(
            prompt_embeds=d["prompt"], image_embeds=d["image"], concat_latents=d["concat"],
            guidance=fw.expression_guidance(d["prompt"], d["negative"], text_cfg, emo_cfg)), torch.float32)
    hook.remove()
    assert rows[:passes + 1] == [passes] + [1] * passes
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-5)
    assert (batched - no_expression).abs().max() > 1e-3     # the expression rows really differ


def test_a_hook_that_reads_one_pass_per_call_gets_one_forward_per_pass():
    model = tiny.build_transformer("t2v", seed=1)
    seen = []

    class OnePass:   # a model adapter's per-call hook without per-row support (no vb_pass_rows)
        def __init__(self, cond):
            seen.append(cond.extra.get("switch"))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False
    model.vb_call_inputs = OnePass
    d = _inputs()
    guidance = C.Guidance({"on": C.GuidancePass(d["prompt"], {"switch": 1}),
                           "off": C.GuidancePass(d["negative"], {"switch": 0})}, "off", [(3.0, "on", "off")])
    cond = C.WanConditioning(prompt_embeds=d["prompt"], guidance=guidance)
    rows, hook = _counting(model)
    with torch.no_grad():
        S.guided_passes(model, d["x"], d["t"], cond, torch.float32, batch=True)
        model.vb_pass_rows = True    # declared: one batched call, its rows in cond.extra[PASS_ROWS]
        seen.clear()
        S.guided_passes(model, d["x"], d["t"], cond, torch.float32, batch=True)
    hook.remove()
    assert rows == [1, 1, 2] and seen == [None]
