"""FlashPortrait on tiny random models in the published file layout: loaders (torch.load weights_only, nested
state_dict, ONNX via onnxruntime), the normalised expression block, per-frame expression attention, sliding
windows, and a 25 fps driver rendered at 24 fps with exactly round(duration×24) frames and the audio in sync."""
import os

import numpy as np
import pytest
import torch

from vibeboard.common import runtime
from vibeboard.foundry import flashportrait as fp
from vibeboard.foundry import flashportrait_wan as fw
from vibeboard.foundry import performance as perf
from vibeboard.media.video import probe_video, write_video
from vibeboard.models import tiny, wan_keys
from vibeboard.wan import windows as W

EMO = 32  # tiny expression-token width (2048 in the release)


def _tiny_release(folder, face_models=True):
    """transformer.pt (original Wan keys + emo projections, nested under state_dict), portrait_encoder.pt,
    pd_fpg.pth, face_det.onnx, face_landmark.onnx."""
    os.makedirs(folder, exist_ok=True)
    model = tiny.build_transformer("i2v")
    state = {wan_keys.diffusers_to_wan_key(k): v for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(1)
    for i in range(len(model.blocks)):
        for kv in "kv":
            state[f"blocks.{i}.cross_attn.emo_{kv}_proj.weight"] = torch.randn(32, EMO, generator=g) * 0.1
    torch.save({"state_dict": state, "step": 100}, os.path.join(folder, "transformer.pt"))
    torch.manual_seed(2)
    enc = fp.PortraitEncoder(out_dim=EMO, resampler_dim=32, depth=1, heads=2, dim_head=16)
    torch.save(enc.state_dict(), os.path.join(folder, "portrait_encoder.pt"))
    if face_models:
        torch.save(fp.FanEncoder().state_dict(), os.path.join(folder, "pd_fpg.pth"))
        from foundry_face_models import write_face_det, write_face_landmark  # one planted face, 222 points
        write_face_landmark(os.path.join(folder, "face_landmark.onnx"))
        write_face_det(os.path.join(folder, "face_det.onnx"))
    return model, state


def test_loaders_read_the_published_layout(tmp_path):
    pytest.importorskip("onnxruntime")
    model, state = _tiny_release(tmp_path / "FlashPortrait")
    files = fp.resolve_files("FlashPortrait", "folder", str(tmp_path / "FlashPortrait"))
    loaded, emo = fp.load_transformer(files["transformer.pt"], dtype=torch.float32)
    assert sorted(emo) == [0, 1] and emo[0]["k"].shape == (32, EMO)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    enc = fp.load_portrait_encoder(files["portrait_encoder.pt"])
    tokens = enc(torch.randn(1, 3, 554))
    assert tokens.shape == (1, 3, fp.TOKENS_PER_FRAME, EMO)
    fan = fp.load_fan_encoder(files["pd_fpg.pth"])
    assert isinstance(fan, fp.FanEncoder)
    pts, euler, prob = fp.landmarks(fp.onnx_session(files["face_landmark.onnx"]), torch.rand(2, 3, 128, 128))
    assert pts.shape == (2, 222, 2) and euler.shape == (2, 3) and prob.shape == (2, 1)
    from vibeboard.foundry.face_features import driving_features
    feats = driving_features(torch.rand(2, 40, 48, 3), files)  # landmarks → crop → PD-FGC, per frame
    assert feats.shape == (1, 2, 554) and torch.isfinite(feats).all()


def test_a_pickle_with_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))
    path = tmp_path / "portrait_encoder.pt"
    torch.save({"x": Evil()}, str(path))
    with pytest.raises(fp.FlashPortraitError, match="not a plain tensor checkpoint"):
        fp.torch_tensors(str(path))


def test_missing_pd_fpg_is_one_clear_error_naming_node_input_and_path(tmp_path):
    folder = tmp_path / "FlashPortrait"
    folder.mkdir()
    for name in fp.FILES:
        if name != "pd_fpg.pth":
            (folder / name).write_bytes(b"x")
    with pytest.raises(runtime.NodeInputError) as err:
        fp.resolve_files("FlashPortrait", "folder", str(folder))
    msg = str(err.value)
    assert msg.startswith("FlashPortrait: input 'folder':") and str(folder / "pd_fpg.pth") in msg


def test_normalised_expression_block_takes_the_main_branch_statistics():
    x, emo = torch.randn(2, 10, 8) * 3 + 1, torch.randn(2, 10, 8) * 0.5 - 5
    out = fp.normalise_expression(emo, x)
    assert torch.allclose(out.mean(dim=(1, 2)), x.mean(dim=(1, 2)), atol=1e-4)
    assert torch.allclose(out.std(dim=(1, 2)), x.std(dim=(1, 2)), rtol=1e-3)


def test_expression_attention_is_per_frame_and_off_at_scale_zero():
    model = tiny.build_transformer("i2v")
    g = torch.Generator().manual_seed(0)
    emo = {i: {"k": torch.randn(32, EMO, generator=g), "v": torch.randn(32, EMO, generator=g)} for i in range(2)}
    plain = tiny.build_transformer("i2v")
    state = fp.patch_expression_attention(model, emo)
    x = torch.randn(1, 36, 3, 4, 4)
    kw = dict(timestep=torch.tensor([500.0]), encoder_hidden_states=torch.randn(1, 512, 32),
              encoder_hidden_states_image=torch.randn(1, 5, 24), return_dict=False)
    with torch.no_grad():
        ref = plain(x, **kw)[0]
        state.tokens, state.scale = torch.randn(1, 3, 6, EMO), 0.0
        assert torch.allclose(model(x, **kw)[0], ref, atol=1e-5)  # our processor = diffusers' without expression
        state.scale = 1.0
        a = model(x, **kw)[0]
        state.tokens = state.tokens.clone()
        state.tokens[:, 2] += 1.0  # change only the last latent frame's expression
        b = model(x, **kw)[0]
    assert not torch.allclose(a, ref)
    assert not torch.allclose(a[:, :, 2], b[:, :, 2])


def test_sliding_windows_cover_everything_and_blend_linearly():
    wins = W.context_windows(20, 8, 3)
    assert wins[0] == (0, 8) and wins[-1][1] == 20
    covered = set()
    for s, e in wins:
        covered |= set(range(s, e))
    assert covered == set(range(20))
    out = W.blend_windows(lambda s, e: torch.full((1, 1, e - s), float(s)), 20, wins)
    assert out[0, 0, 0] == 0 and out[0, 0, 19] == wins[-1][0]
    assert torch.all(out[0, 0, 1:] >= out[0, 0, :-1])  # ramps, never jumps back


def test_25fps_driver_renders_at_24fps_with_exact_frames_and_audio_in_sync(tmp_path, monkeypatch):
    """The node end to end on tiny files in the published layout (FlashPortrait folder + ComfyUI Wan I2V parts),
    through the one Wan runtime with model offload."""
    pytest.importorskip("onnxruntime")
    from vibeboard.foundry.nodes import VBFlashPortrait
    from vibeboard.models import vram
    models = tmp_path / "models"
    paths = tiny.write_comfy_layout(str(models), kinds=())
    _tiny_release(models / "checkpoints" / "FlashPortrait")
    monkeypatch.setitem(runtime._dirs, "models", str(models))
    monkeypatch.setattr(vram, "_DEFAULT", vram.VramManager(device="cpu"))
    fps_in, dur = 25, 0.32
    t = np.arange(int(dur * 48000)) / 48000
    driver = str(tmp_path / "driver.mp4")
    frames = torch.rand(int(dur * fps_in), 32, 32, 3)
    write_video(driver, frames, fps_in, audio=(np.sin(2 * np.pi * 440 * t)[None].astype(np.float32), 48000))
    conformed, _, duration = perf.conform_driving_video(driver, 24)
    want = round(duration * 24)
    assert conformed.shape[0] == want
    out, audio = VBFlashPortrait().perform(
        "checkpoints/FlashPortrait", torch.rand(1, 32, 32, 3), driver, "a woman talking", 24.0, 2, 1.0, 4.0, 2, 1,
        "model_cpu_offload", 0, vae=paths["vae"], text_encoder=paths["umt5"], tokenizer=paths["tokenizer"],
        clip_vision=paths["clip_vision"])
    assert out.shape == (want, 32, 32, 3) and torch.isfinite(out).all()
    assert all(m.state == "host" for m in vram._DEFAULT.models.values())  # model offload: nothing left on device
    path = str(tmp_path / "out.mp4")
    write_video(path, out, 24, audio=(audio["waveform"][0].numpy(), audio["sample_rate"]))
    info = probe_video(path)
    assert info.frame_count == want
    import av
    with av.open(path) as c:
        a = c.streams.audio[0]
        audio_s = float(a.duration * a.time_base)
    assert abs(audio_s - want / 24) <= 1 / 24
