"""InfiniteTalk/MultiTalk audio path on tiny random models in the published layouts: the adapter file loads with
strict key matching, hooks a DiT without changing it, answers per latent frame; a real spoken WAV (espeak-ng) →
wav2vec2 (transformers, chinese-wav2vec2-base folder layout) → segments rendered through `wan.sampler.sample()`
→ stitched MP4 with the exact frame count, no duplicated or missing frame at a seam, AAC 48 kHz."""
import os
import shutil
import subprocess

import av
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from vibeboard.foundry import audio_render as R
from vibeboard.foundry import talking_audio as A
from vibeboard.foundry import tiny_release as TR
from vibeboard.models import tiny
from vibeboard.wan.handle import WanHandle

FEAT_LAYERS, FEAT_DIM, AUDIO_DIM, TOKENS = TR.WAV2VEC_LAYERS, TR.WAV2VEC_DIM, TR.AUDIO_DIM, TR.AUDIO_TOKENS


def _adapter_state(seed=0):
    """The published key layout (audio_proj.* + blocks.N.audio_cross_attn.* + blocks.N.norm_x.*), tiny shapes."""
    cfg = tiny.build_transformer("i2v").config
    return TR.infinitetalk_state(cfg, seed), cfg


def test_published_key_names_and_shapes():
    state, _ = _adapter_state()
    assert {k for k in state if not k.startswith("blocks.")} == {
        f"audio_proj.{n}.{p}" for n in ("proj1", "proj1_vf", "proj2", "proj3", "norm") for p in ("weight", "bias")}
    assert sorted(k[len("blocks.0."):] for k in state if k.startswith("blocks.0.")) == sorted(
        f"audio_cross_attn.{n}.{p}" for n in ("q_linear", "kv_linear", "proj") for p in ("weight", "bias")) + [
        "norm_x.bias", "norm_x.weight"]
    # window of 5 frames for the first latent frame, 8 for the others, each of layers × channels features
    assert state["audio_proj.proj1.weight"].shape[1] == 5 * FEAT_LAYERS * FEAT_DIM
    assert state["audio_proj.proj1_vf.weight"].shape[1] == 8 * FEAT_LAYERS * FEAT_DIM
    assert state["blocks.0.audio_cross_attn.kv_linear.weight"].shape == (64, AUDIO_DIM)


def test_windows_and_latent_groups_follow_the_published_layout():
    feats = torch.arange(9, dtype=torch.float32).view(9, 1, 1).expand(9, 12, 768)
    win = A.audio_windows(feats)
    assert win.shape == (9, 5, 12, 768) and win[0, :, 0, 0].tolist() == [0, 0, 0, 1, 2]
    first, latter = A.latent_frame_groups(win)
    assert first.shape == (1, 1, 5, 12, 768) and latter.shape == (1, 2, 8, 12, 768)
    # latent frame 1 = pixel frames 1..4: frame 1 at offsets −2..0 + centres of 2, 3 + frame 4 at 0..+2
    assert latter[0, 0, :, 0, 0].tolist() == [0, 0, 1, 2, 3, 4, 5, 6]
    # a segment's windows clamp to the whole clip, not to the segment
    assert A.audio_windows(feats, torch.arange(4, 9))[0, :, 0, 0].tolist() == [2, 3, 4, 5, 6]


def test_strict_loading_names_the_file_and_the_keys(tmp_path):
    state, cfg = _adapter_state()
    good = tmp_path / "infinitetalk.safetensors"
    save_file(state, str(good))
    adapter = A.load_adapter(str(good), cfg, dtype=torch.float32)
    for k, v in state.items():
        assert torch.equal(adapter.state_dict()[k], v), k
    missing = {k: v for k, v in state.items() if k != "blocks.1.norm_x.bias"}
    save_file(missing, str(tmp_path / "missing.safetensors"))
    with pytest.raises(A.AudioAdapterError, match=r"missing\.safetensors.*missing \['blocks\.1\.norm_x\.bias'\]"):
        A.load_adapter(str(tmp_path / "missing.safetensors"), cfg)
    extra = dict(state, **{"blocks.0.audio_cross_attn.q_norm.weight": torch.ones(16)})
    save_file(extra, str(tmp_path / "extra.safetensors"))
    with pytest.raises(A.AudioAdapterError, match=r"extra\.safetensors.*unexpected \['blocks\.0\.audio_cross_attn"):
        A.load_adapter(str(tmp_path / "extra.safetensors"), cfg)
    save_file({"blocks.0.self_attn.q.weight": torch.zeros(2, 2)}, str(tmp_path / "wan.safetensors"))
    with pytest.raises(A.AudioAdapterError, match="not a MultiTalk/InfiniteTalk"):
        A.load_adapter(str(tmp_path / "wan.safetensors"), cfg)
    with pytest.raises(A.AudioAdapterError, match="safetensors only"):
        A.load_adapter(str(tmp_path / "infinitetalk.pt"), cfg)


def test_adapter_hooks_a_dit_per_frame_and_leaves_it_unchanged():
    state, cfg = _adapter_state()
    adapter = A.adapter_from_state(state, cfg)
    model = tiny.build_transformer("i2v")
    tokens = adapter.tokens(torch.randn(9, 5, FEAT_LAYERS, FEAT_DIM))
    assert tokens.shape == (1, 3, TOKENS, AUDIO_DIM)
    x = torch.randn(1, 36, 3, 4, 4)
    kw = dict(timestep=torch.tensor([500.0]), encoder_hidden_states=torch.randn(1, 512, 32),
              encoder_hidden_states_image=torch.randn(1, 5, 24), return_dict=False)
    with torch.no_grad():
        plain = model(x, **kw)[0]
        with adapter.attached(model, tokens, scale=0.0):
            assert torch.allclose(model(x, **kw)[0], plain, atol=1e-6)
        with adapter.attached(model, tokens):
            a = model(x, **kw)[0]
        changed = tokens.clone()
        changed[:, 2] += 1.0
        with adapter.attached(model, changed):
            b = model(x, **kw)[0]
        after = model(x, **kw)[0]
    assert not torch.allclose(a, plain, atol=1e-4) and not torch.allclose(a, b, atol=1e-4)
    assert torch.equal(after, plain)                                 # hooks removed: the shared DiT is untouched
    # inside a block, the tokens of latent frame f reach only frame f's queries (3 frames × 4 tokens each)
    h = torch.randn(1, 12, 32)
    with torch.no_grad():
        o1, o2 = adapter.blocks[0](h, tokens), adapter.blocks[0](h, changed)
    assert torch.allclose(o1[:, :8], o2[:, :8], atol=1e-6) and not torch.allclose(o1[:, 8:], o2[:, 8:], atol=1e-4)


def test_hooked_block_computes_upstreams_order_exactly():
    """One Wan block with the adapter attached = upstream's WanAttentionBlock written out: self-attention, then
    x += cross(norm(x)), then x += audio(norm_x(x)) with each latent frame's queries on its own tokens, then FFN."""
    state, cfg = _adapter_state()
    adapter = A.adapter_from_state(state, cfg)
    model = tiny.build_transformer("i2v")
    g = torch.Generator().manual_seed(2)
    x5 = torch.randn(1, 36, 3, 4, 4, generator=g)
    tokens = adapter.tokens(torch.randn(9, 5, FEAT_LAYERS, FEAT_DIM, generator=g))
    with torch.no_grad():
        rotary = model.rope(x5)
        h = model.patch_embedding(x5).flatten(2).transpose(1, 2).contiguous()
        _, proj, enc, enc_img = model.condition_embedder(torch.tensor([300.0]), torch.randn(1, 512, 32, generator=g),
                                                         torch.randn(1, 5, 24, generator=g))
        proj, enc = proj.unflatten(1, (6, -1)), torch.cat([enc_img, enc], 1)
        block, extra = model.blocks[0], adapter.blocks[0]
        with adapter.attached(model, tokens):
            hooked = block(h, enc, proj, rotary)
        shift, scale, gate, c_shift, c_scale, c_gate = (block.scale_shift_table + proj.float()).chunk(6, dim=1)
        x = (h + block.attn1((block.norm1(h) * (1 + scale) + shift), None, None, rotary) * gate)
        x = x + block.attn2(block.norm2(x), enc, None, None)
        xn = torch.nn.functional.layer_norm(x, (32,), extra.norm_x.weight, extra.norm_x.bias, 1e-6)
        att = extra.audio_cross_attn
        audio = []
        for f in range(3):  # 4 video tokens per latent frame (4×4 latent in 2×2 patches), 2 heads of 16
            q = att.q_linear(xn[:, f * 4:(f + 1) * 4]).view(1, 4, 2, 16).transpose(1, 2)
            k, v = att.kv_linear(tokens[:, f]).view(1, TOKENS, 2, 2, 16).unbind(2)
            o = torch.nn.functional.scaled_dot_product_attention(q, k.transpose(1, 2), v.transpose(1, 2))
            audio.append(att.proj(o.transpose(1, 2).reshape(1, 4, 32)))
        x = x + torch.cat(audio, 1)
        ref = x + block.ffn(block.norm3(x) * (1 + c_scale) + c_shift) * c_gate
        plain = block(h, enc, proj, rotary)
    assert torch.allclose(hooked, ref, atol=1e-5) and (hooked - plain).abs().max() > 1e-2


def test_segments_start_on_the_previous_last_frame_and_cover_each_frame_once():
    segs = R.plan(40, 13)
    assert [(s.start_frame, s.frames, s.keep_from) for s in segs] == [(0, 13, 0), (12, 13, 1), (24, 13, 1),
                                                                       (27, 13, 10)]
    owner = []
    for s in segs:
        owner += list(range(s.start_frame + s.keep_from, s.start_frame + s.frames))
    assert owner == list(range(40))
    assert [(s.start_frame, s.frames) for s in R.plan(7, 13)] == [(0, 7)]
    # InfiniteTalk: each later segment continues from the previous one's last 9 frames
    assert [(s.start_frame, s.keep_from) for s in R.plan(40, 21, 9)] == [(0, 0), (12, 9), (19, 14)]
    with pytest.raises(ValueError, match="4k\\+1"):
        R.plan(40, 12)
    with pytest.raises(ValueError, match="motion_frames"):
        R.plan(40, 13, 13)


def _espeak_wav(path, text):
    if not shutil.which("espeak-ng"):
        pytest.skip("espeak-ng is not installed")
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
    from vibeboard.media.audio import decode_audio
    return decode_audio(str(path))


def _tiny_wav2vec(folder):
    """chinese-wav2vec2-base's folder layout (config.json, preprocessor_config.json, model.safetensors)."""
    TR.write_wav2vec(folder)
    assert sorted(os.listdir(folder)) == ["config.json", "model.safetensors", "preprocessor_config.json"]
    return A.load_wav2vec(str(folder))


def test_wav2vec_features_are_every_layer_at_the_video_frame_rate(tmp_path):
    """At the encoder's own frame count the interpolation is the identity: the features are exactly the stock
    model's hidden states of layers 1…L; at another count they are resampled before the transformer."""
    extractor, model = _tiny_wav2vec(tmp_path / "w2v")
    speech = np.sin(np.arange(16000) / 16000 * 2 * np.pi * 220).astype(np.float32) * 0.3
    x = torch.from_numpy(np.asarray(extractor(speech, sampling_rate=16000).input_values)).reshape(1, -1)
    with torch.no_grad():
        hidden = model(x, output_hidden_states=True).hidden_states
    native = hidden[0].shape[1]
    feats = A.wav2vec_features(extractor, model, speech, native)
    assert feats.shape == (native, FEAT_LAYERS, FEAT_DIM)
    assert torch.allclose(feats, torch.stack(hidden[1:], 2)[0], atol=1e-5)
    at25 = A.wav2vec_features(extractor, model, speech, 25)
    assert at25.shape == (25, FEAT_LAYERS, FEAT_DIM) and not torch.allclose(at25[:, 0], feats[:25, 0], atol=1e-3)


def test_spoken_wav_renders_segments_through_the_sampler_and_stitches_exactly(tmp_path, monkeypatch):
    waveform, rate = _espeak_wav(tmp_path / "line.wav", "Hello, this is the actor speaking the first line.")
    state, cfg = _adapter_state()
    save_file(state, str(tmp_path / "infinitetalk.safetensors"))
    adapter = A.load_adapter(str(tmp_path / "infinitetalk.safetensors"), cfg, dtype=torch.float32)
    from diffusers import AutoencoderKLWan
    torch.manual_seed(4)  # a Wan VAE lighter than tiny.build_vae's (one residual block per level): CPU time
    vae = AutoencoderKLWan(base_dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=1, attn_scales=[],
                           temperal_downsample=[False, True, True]).eval()
    handle = WanHandle.from_modules(dtype=torch.float32, transformer=tiny.build_transformer("i2v"), vae=vae,
                                    image_encoder=tiny.build_clip())
    calls, firsts, rendered = [], [], []
    call_inputs = A.InfiniteTalkAdapter.call_inputs

    def counting(self, base, cond):
        from vibeboard.wan.conditioning import pass_rows
        calls.append([row.get("audio") for row in pass_rows(cond.extra)])
        return call_inputs(self, base, cond)
    monkeypatch.setattr(A.InfiniteTalkAdapter, "call_inputs", counting)
    segment = R.render_segment

    def recording(handle_, first, windows, *a, **k):
        firsts.append(first.clone())
        return segment(handle_, first, windows, *a, **k)
    monkeypatch.setattr(R, "render_segment", recording)

    settings = R.TalkSettings(segment_frames=9, fps=8.0, steps=2, seed=5)
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 40, 40, 3, generator=g)
    text, negative = torch.randn(1, 512, 32, generator=g), torch.randn(1, 512, 32, generator=g)
    out = R.talking_head(handle, adapter, _tiny_wav2vec(tmp_path / "chinese-wav2vec2-base"), image, waveform,
                         rate, text, negative, str(tmp_path / "talk.mp4"), settings, height=32, width=32,
                         on_segment=lambda i, n, video: rendered.append(video))
    duration = waveform.shape[1] / rate
    total = round(duration * 8)
    segs = R.plan(total, 9)
    assert out["frames"] == total and len(rendered) == len(segs) >= 3
    # one DiT forward per step, its rows upstream's three passes (text + audio, audio without text, neither)
    assert len(calls) == len(segs) * 2 and all(rows == [True, True, False] for rows in calls)
    # each later segment starts on the frame the stitched clip has at its start (I2V first frame)
    clip = out["clip"]
    for seg, first in zip(segs[1:], firsts[1:]):
        assert torch.equal(first[0], clip[seg.start_frame])
    # every output frame comes from exactly one segment, in order
    for seg, video in zip(segs, rendered):
        assert torch.equal(clip[seg.start_frame + seg.keep_from:seg.start_frame + seg.frames], video[seg.keep_from:])
    with av.open(str(tmp_path / "talk.mp4")) as c:
        a = c.streams.audio[0]
        decoded = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)]).astype(np.float32) / 255
        assert a.codec_context.name == "aac" and a.rate == 48000
        audio_s = float(a.duration * a.time_base)
    assert decoded.shape[0] == total and abs(audio_s - total / 8) <= 1 / 8
    ref = clip.numpy()
    err = ((decoded[:, None] - ref[None]) ** 2).mean(axis=(2, 3, 4))
    assert (err.argmin(1) == np.arange(total)).mean() > 0.9            # frame i of the file is clip frame i


def test_reference_anchor_keeps_the_portrait_and_holds_the_motion_frames(tmp_path, monkeypatch):
    """InfiniteTalk's streaming mode: every segment's I2V image is the portrait; a later segment's head latents are
    the VAE latents of the frames it continues from."""
    waveform, rate = _espeak_wav(tmp_path / "line.wav", "Hi there, how are you?")
    state, cfg = _adapter_state()
    adapter = A.adapter_from_state(state, cfg)
    from diffusers import AutoencoderKLWan
    torch.manual_seed(4)
    vae = AutoencoderKLWan(base_dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=1, attn_scales=[],
                           temperal_downsample=[False, True, True]).eval()
    handle = WanHandle.from_modules(dtype=torch.float32, transformer=tiny.build_transformer("i2v"), vae=vae,
                                    image_encoder=tiny.build_clip())
    seen = []
    segment = R.render_segment

    def recording(handle_, first, windows, *a):
        seen.append((first.clone(), None if a[-1] is None else a[-1].clone()))
        return segment(handle_, first, windows, *a)
    monkeypatch.setattr(R, "render_segment", recording)
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 32, 32, 3, generator=g)
    settings = R.TalkSettings(segment_frames=9, motion_frames=5, anchor="reference", fps=10.0, steps=1)
    out = R.talking_head(handle, adapter, _tiny_wav2vec(tmp_path / "w2v"), image, waveform, rate,
                         torch.randn(1, 512, 32, generator=g), torch.randn(1, 512, 32, generator=g), None, settings,
                         height=32, width=32)
    segs = R.plan(out["frames"], 9, 5)
    assert len(seen) == len(segs) >= 2 and all(torch.equal(first[0], image[0]) for first, _ in seen)
    assert seen[0][1] is None
    for seg, (_, motion) in zip(segs[1:], seen[1:]):
        assert seg.keep_from >= 5 and torch.equal(motion, out["clip"][seg.start_frame:seg.start_frame + 5])
    with pytest.raises(ValueError, match="anchor"):
        R.talking_head(handle, adapter, _tiny_wav2vec(tmp_path / "w2v"), image, waveform, rate,
                       torch.zeros(1, 512, 32), torch.zeros(1, 512, 32), None,
                       R.TalkSettings(segment_frames=9, motion_frames=5), height=32, width=32)


def _guidance_case(text_cfg):
    state, cfg = _adapter_state()
    adapter = A.adapter_from_state(state, cfg)
    model = tiny.build_transformer("i2v")
    from vibeboard.wan.conditioning import WanConditioning
    g = torch.Generator().manual_seed(1)
    win = torch.randn(5, 5, FEAT_LAYERS, FEAT_DIM, generator=g)
    prompt, negative = torch.randn(1, 512, 32, generator=g), torch.randn(1, 512, 32, generator=g)
    cond = WanConditioning(prompt_embeds=prompt, image_embeds=torch.randn(1, 5, 24, generator=g),
                           concat_latents=torch.randn(1, 20, 2, 4, 4, generator=g),
                           guidance=A.audio_guidance(prompt, negative, text_cfg, 4.0),
                           extra={A.EXTRA_KEY: {"windows": win}})
    x, t = torch.randn(1, 16, 2, 4, 4, generator=g), torch.tensor([700.0])
    return adapter, model, cond, win, prompt, negative, x, t


@pytest.mark.parametrize("text_cfg", [5.0, 1.0])
def test_audio_guidance_rows_follow_upstream(text_cfg):
    """The one sampler's guidance with the audio adapter's passes = upstream's formula (text_cfg ≠ 1:
    uncond + t·(cond − drop_text) + a·(drop_text − uncond); text_cfg 1: drop_audio + a·(cond − drop_audio)),
    computed here from plain DiT calls with the audio attention hooked on; the passes batched in one forward (the
    sampler's batch_cfg) or run one by one agree."""
    from vibeboard.wan import sampler as S
    adapter, model, cond, win, prompt, negative, x, t = _guidance_case(text_cfg)
    forwards = []
    hook = model.register_forward_pre_hook(lambda mod, args, kwargs: forwards.append(kwargs["hidden_states"].shape[0]),
                                           with_kwargs=True)
    with torch.no_grad():
        batched = S.guided_passes(model, x, t, cond, torch.float32, adapter, batch=True)
        single = S.guided_passes(model, x, t, cond, torch.float32, adapter, batch=False)
        hook.remove()
        audio = adapter.tokens(win)
        silent = adapter.tokens(torch.zeros_like(win))

        def run(text, tok):
            with adapter.attached(model, tok):
                return S.predict(model, x, t, text, cond, torch.float32)
        c = run(prompt, audio)
        if text_cfg != 1.0:
            dt, u = run(negative, audio), run(negative, silent)
            expected = u + text_cfg * (c - dt) + 4.0 * (dt - u)
        else:
            da = run(prompt, silent)
            expected = da + 4.0 * (c - da)
    rows = 3 if text_cfg != 1.0 else 2
    assert forwards == [rows] + [1] * rows          # one batched forward, then one forward per pass
    assert torch.allclose(batched, single, atol=1e-5)
    assert torch.allclose(single, expected, atol=1e-5)
    assert not torch.allclose(c, expected, atol=1e-3)   # the guidance changes the prediction


def test_talking_head_node_reads_the_pulled_files_and_names_what_is_missing(tmp_path, monkeypatch):
    from vibeboard.common import runtime
    from vibeboard.foundry.nodes import VBTalkingHead
    models = tmp_path / "models"
    monkeypatch.setitem(runtime._dirs, "models", str(models))
    monkeypatch.delenv("VIBEBOARD_COMFYUI_DIR", raising=False)
    waveform, rate = _espeak_wav(tmp_path / "hi.wav", "Hi there.")
    state, _ = _adapter_state()
    (models / "diffusion_models" / "InfiniteTalk" / "single").mkdir(parents=True)
    save_file(state, str(models / "diffusion_models" / "InfiniteTalk" / "single" / "infinitetalk.safetensors"))
    from diffusers import AutoencoderKLWan
    torch.manual_seed(4)
    vae = AutoencoderKLWan(base_dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=1, attn_scales=[],
                           temperal_downsample=[False, True, True]).eval()
    wan = WanHandle.from_modules(dtype=torch.float32, transformer=tiny.build_transformer("i2v"), vae=vae,
                                 image_encoder=tiny.build_clip())
    g = torch.Generator().manual_seed(0)
    text = {"prompt_embeds": torch.randn(1, 512, 32, generator=g),
            "negative_embeds": torch.randn(1, 512, 32, generator=g)}
    speech = {"waveform": torch.from_numpy(waveform)[None], "sample_rate": rate}
    args = dict(wan=wan, text=text, portrait=torch.rand(1, 32, 32, 3, generator=g), speech=speech,
                adapter="InfiniteTalk/single/infinitetalk.safetensors", wav2vec="chinese-wav2vec2-base", width=32,
                height=32, segment_frames=13, fps=6.0, steps=1, shift=7.0, text_cfg=5.0, audio_cfg=4.0, seed=1)
    with pytest.raises(runtime.NodeInputError) as err:  # chinese-wav2vec2-base not pulled yet
        VBTalkingHead().perform(**args)
    message = str(err.value)
    assert "input 'wav2vec'" in message and str(models / "checkpoints" / "chinese-wav2vec2-base") in message
    assert "vibeboard models pull chinese-wav2vec2-base" in message
    _tiny_wav2vec(models / "checkpoints" / "chinese-wav2vec2-base")
    frames, audio = VBTalkingHead().perform(**args)
    total = round(waveform.shape[1] / rate * 6)
    assert frames.shape == (total, 32, 32, 3) and audio["sample_rate"] == rate
    assert abs(audio["waveform"].shape[-1] - total / 6 * rate) <= 1
    with pytest.raises(runtime.NodeInputError, match="input 'segment_frames'.*9 motion frames"):
        VBTalkingHead().perform(**dict(args, segment_frames=9))  # InfiniteTalk continues from 9 frames
    with pytest.raises(runtime.NodeInputError, match="input 'wan'.*CLIP vision"):
        VBTalkingHead().perform(**dict(args, wan=WanHandle.from_modules(
            dtype=torch.float32, transformer=tiny.build_transformer("i2v"), vae=vae)))


def test_audio_projection_runs_in_bf16_weights_with_fp32_normalisation():
    """The release runs in bf16: the output LayerNorm must promote its bf16 weights with the tokens (as upstream's
    fp32 autocast does) — the H200 benchmark once failed here with 'expected scalar type Float but found BFloat16'."""
    torch.manual_seed(0)
    proj = A.AudioProjModel(feature_dim=FEAT_LAYERS * FEAT_DIM, intermediate_dim=8, output_dim=AUDIO_DIM,
                            context_tokens=TOKENS)
    with torch.no_grad():
        proj.norm.weight.add_(torch.randn_like(proj.norm.weight))
    first, latter = torch.randn(1, 1, 5, FEAT_LAYERS, FEAT_DIM), torch.randn(1, 3, 8, FEAT_LAYERS, FEAT_DIM)
    ref = proj(first, latter)
    out = proj.to(torch.bfloat16)(first.bfloat16(), latter.bfloat16())
    assert out.dtype == torch.bfloat16 and out.shape == ref.shape == (1, 4, TOKENS, AUDIO_DIM)
    assert float((out.float() - ref).norm() / ref.norm()) < 3e-2


def test_audio_projection_norm_runs_through_its_module_hooks():
    """Sequential offload moves a layer's weights in a forward pre-hook: the fp32 normalisation must run inside the
    norm module's own forward, not bypass it (the H200 benchmark's sequential mode failed on a CPU weight)."""
    proj = A.AudioProjModel(feature_dim=FEAT_LAYERS * FEAT_DIM, intermediate_dim=8, output_dim=AUDIO_DIM,
                            context_tokens=TOKENS)
    seen = []
    proj.norm.register_forward_pre_hook(lambda module, args: seen.append(args[0].dtype))
    proj.to(torch.bfloat16)(torch.randn(1, 1, 5, FEAT_LAYERS, FEAT_DIM).bfloat16(),
                            torch.randn(1, 2, 8, FEAT_LAYERS, FEAT_DIM).bfloat16())
    assert seen == [torch.bfloat16]
