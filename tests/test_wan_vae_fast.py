"""wan/vae_fast.py: the streamed Wan VAE decode matches diffusers' decode; tiles blend back; decode overlapped with
the MP4 encode writes the same frames; the Wan Decode to Video node; bench/vae_decode.py --quick runs."""
import importlib.util
import os

import av
import numpy as np
import pytest
import torch

from vibeboard.common import runtime
from vibeboard.models import tiny
from vibeboard.wan import vae_fast as V
from vibeboard.wan.handle import WanHandle

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def vae():
    return tiny.build_vae()


def _latents(c=16, t=2, h=4, w=4, seed=1):
    return torch.randn(1, c, t, h, w, generator=torch.Generator().manual_seed(seed))


def test_decode_keeps_no_autograd_graph_even_where_grad_mode_is_on(tmp_path):
    # A node runs wherever its caller's grad mode is; a VAE loaded with trainable parameters must still decode
    # without keeping activations (the H200 ran out of memory after 9 latent frames before this).
    vae = tiny.build_vae().requires_grad_(True)
    z = _latents()
    with torch.enable_grad():
        chunks = list(V.iter_decode(vae, z))
        summary, images = V.decode_to_video(vae, z, str(tmp_path / "g.mp4"), 16.0, preset="ultrafast")
    assert all(c.grad_fn is None and not c.requires_grad for c in chunks)
    assert images.grad_fn is None and summary["frames"] == 5


@torch.no_grad()
def test_chunk_loop_is_bit_identical_to_diffusers_decode(vae):
    z = _latents()
    ref = vae.decode(z).sample
    chunks = list(V.iter_decode(vae, z, V.REFERENCE))
    assert [c.shape[2] for c in chunks] == [1, 4]           # causal: 1 frame, then 4 per latent frame
    assert torch.equal(torch.cat(chunks, 2), ref)
    assert torch.equal(V.decode(vae, z, V.REFERENCE), ref)


@torch.no_grad()
@pytest.mark.parametrize("name", ["fast_ops", "fast"])
def test_fast_options_stay_within_float_noise_and_leave_the_model_unchanged(vae, name):
    z = _latents()
    ref = vae.decode(z).sample
    weights = {k: (v.data_ptr(), v.stride()) for k, v in vae.state_dict().items()}
    out = V.decode(vae, z, V.options_for(name))
    assert (out - ref).abs().max() < 1e-4
    assert {k: (v.data_ptr(), v.stride()) for k, v in vae.state_dict().items()} == weights  # weights put back
    assert not any("forward" in m.__dict__ for m in vae.modules())                         # ops unpatched
    assert torch.equal(vae.decode(z).sample, ref)


@torch.no_grad()
def test_fast_ops_in_bf16_are_no_further_from_fp32_than_diffusers_bf16():
    vae32 = tiny.build_vae(seed=3)
    z = _latents(seed=4)
    truth = vae32.decode(z).sample
    vae16 = tiny.build_vae(seed=3).to(torch.bfloat16)
    default = vae16.decode(z.bfloat16()).sample.float()
    fast = V.decode(vae16, z.bfloat16(), V.options_for("fast_ops")).float()
    floor = (default - truth).abs().max()
    assert (fast - truth).abs().max() <= 1.5 * floor


@torch.no_grad()
def test_wan22_vae_with_patching_decodes_the_same():
    vae = tiny.build_vae(wan22=True)
    z = _latents(c=48, t=2, h=2, w=2)
    ref = vae.decode(z).sample
    assert torch.equal(V.decode(vae, z, V.REFERENCE), ref)
    assert (V.decode(vae, z, V.options_for("fast")) - ref).abs().max() < 1e-4


def test_overlapping_tiles_blend_back_to_the_whole():
    whole = torch.randn(1, 3, 2, 5, 40)
    windows = V._tile_grid(10, 3, 2)          # latent windows, ×4 px here
    assert windows[0][0] == 0 and windows[-1][1] == 10
    assert all(b[0] < a[1] for a, b in zip(windows, windows[1:]))   # neighbours overlap
    pieces = [whole[..., s * 4:e * 4] for s, e in windows]
    assert torch.allclose(V._blend_tiles(pieces, windows, 4, 4, 40), whole, atol=1e-6)
    ramp = V._ramp(4, whole)
    assert ramp.tolist() == [0.0, 0.25, 0.5, 0.75]                # diffusers' blend_h weights


@torch.no_grad()
def test_tiled_decode_has_the_full_size_and_matches_where_tiles_see_everything(vae):
    z = _latents(h=2, w=8)
    ref = vae.decode(z).sample
    out = V.decode(vae, z, V.DecodeOptions(tiles=2, tile_overlap=1))
    assert out.shape == ref.shape and torch.isfinite(out).all()
    # one tile covering the frame is the untiled decode
    assert torch.equal(V.decode(vae, z, V.DecodeOptions(tiles=2, tile_overlap=8)), ref)


@torch.no_grad()
def test_decode_to_video_writes_every_frame_and_returns_the_images(vae, tmp_path):
    z = _latents()
    ref = vae.decode(z).sample
    seen = []
    summary, images = V.decode_to_video(vae, z, str(tmp_path / "clip.mp4"), 16.0, crf=0, preset="ultrafast",
                                        on_chunk=seen.append)
    assert seen == [1, 5]
    assert summary["frames"] == 5 and (summary["width"], summary["height"]) == (32, 32)
    assert torch.allclose(images, ((ref[0].permute(1, 2, 3, 0)) + 1) / 2, atol=1e-6)
    with av.open(str(tmp_path / "clip.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 5
    # lossless-ish x264 of the uint8 frames (chroma is subsampled, so compare luma-heavy means)
    mean_err = np.abs(np.stack(frames).astype(np.float32) / 255 - images.numpy()).mean()
    assert mean_err < 0.08
    assert V.chunk_to_uint8(torch.tensor([-1.0, 0.0, 1.0]).view(1, 3, 1, 1, 1)).flatten().tolist() == [0, 128, 255]


@torch.no_grad()
def test_decode_to_video_errors_leave_no_file(vae, tmp_path):
    z = _latents()
    with pytest.raises(ValueError, match="preset"):
        V.decode_to_video(vae, z, str(tmp_path / "bad.mp4"), 16.0, preset="nope")
    assert not list(tmp_path.iterdir())

    def boom(done):
        raise RuntimeError("interrupted")
    with pytest.raises(RuntimeError, match="interrupted"):
        V.decode_to_video(vae, z, str(tmp_path / "stopped.mp4"), 16.0, preset="ultrafast", on_chunk=boom)
    assert not list(tmp_path.iterdir())


def test_decode_to_video_node_saves_the_mp4_and_checks_its_latent(vae, tmp_path):
    from vibeboard.wan.nodes import NODE_CLASS_MAPPINGS
    from vibeboard.wan.video_nodes import VBWanDecodeVideo
    assert NODE_CLASS_MAPPINGS["VBWanDecodeVideo"] is VBWanDecodeVideo
    runtime.set_host_dirs(output=str(tmp_path))
    wan = WanHandle.from_modules(vae=vae, variant="t2v")
    out = VBWanDecodeVideo().decode_save(wan, {"samples": _latents()}, fps=16.0, filename_prefix="clips/shot",
                                         crf=19, preset="ultrafast")
    images, path = out["result"]
    assert images.shape == (5, 32, 32, 3) and os.path.isfile(path)
    assert path.startswith(str(tmp_path / "clips")) and out["ui"]["images"][0]["subfolder"] == "clips"
    with pytest.raises(runtime.NodeInputError, match="latent"):
        VBWanDecodeVideo().decode_save(wan, {"samples": torch.zeros(1, 4, 2, 4, 4)})
    with pytest.raises(runtime.NodeInputError, match="fps"):
        VBWanDecodeVideo().decode_save(wan, {"samples": _latents()}, fps=0)


def test_vae_decode_bench_quick_runs_every_variant(tmp_path):
    spec = importlib.util.spec_from_file_location("vae_decode_bench", os.path.join(ROOT, "bench", "vae_decode.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    res = bench.main(["--quick", "--json", str(tmp_path / "out.json")])
    assert set(res["variants"]) == set(bench.VARIANTS)
    for name, row in res["variants"].items():
        assert row["median_s"] > 0
        if "tiles" not in name:
            assert row["max_abs"] < 1e-4, name
    assert len(res["tail"]) == 3 and all(r["frames"] == 5 for r in res["tail"].values())


def test_decode_preset_can_be_chosen_by_environment(monkeypatch):
    monkeypatch.delenv("VIBEBOARD_VAE_DECODE", raising=False)
    assert V.default_options(torch.device("cpu")) == V.REFERENCE
    assert V.default_options(torch.device("cuda")) == V.DEFAULT_CUDA
    assert all(V.options_for(name) is not None for name in V.PRESETS)
    monkeypatch.setenv("VIBEBOARD_VAE_DECODE", "fast_ops")
    assert V.default_options(torch.device("cuda")) == V.DecodeOptions(fast_ops=True)
    monkeypatch.setenv("VIBEBOARD_VAE_DECODE", "warp")
    with pytest.raises(ValueError, match="VIBEBOARD_VAE_DECODE"):
        V.default_options(torch.device("cpu"))
