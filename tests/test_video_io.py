"""Video/audio IO mechanism: real files written and read back through PyAV (libx264, AAC, FLAC, WAV)."""
import os
from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from vibeboard.media import audio as audio_io
from vibeboard.media import video as video_io

SR = 44100


def synthetic_clip(frames=12, height=48, width=64):
    """Smooth gradient background + a bright bar that moves 4 px a frame: every frame is distinct."""
    yy, xx = torch.meshgrid(torch.arange(height, dtype=torch.float32),
                            torch.arange(width, dtype=torch.float32), indexing="ij")
    clip = torch.empty((frames, height, width, 3))
    for i in range(frames):
        clip[i, ..., 0] = 0.15 + 0.6 * xx / width
        clip[i, ..., 1] = 0.15 + 0.6 * yy / height
        clip[i, ..., 2] = 0.4
        bar = (xx >= 4 * i) & (xx < 4 * i + 6)
        clip[i][bar] = torch.tensor([0.95, 0.9, 0.2])
    return clip


def sine(seconds, freq=440.0, rate=SR, channels=1):
    t = np.arange(int(round(seconds * rate))) / rate
    wave = 0.5 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    return np.stack([wave] * channels)


def which_frames(loaded, source):
    """For each loaded frame, the index of the closest source frame."""
    dist = ((loaded[:, None] - source[None]) ** 2).mean(dim=(2, 3, 4))
    return dist.argmin(dim=1).tolist()


def dominant_frequency(wave, rate):
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return np.fft.rfftfreq(len(wave), 1.0 / rate)[spectrum.argmax()]


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("clip") / "clip.mp4")
    clip = synthetic_clip()
    summary = video_io.write_video(path, clip, 24, crf=0, preset="ultrafast", audio=(sine(0.5, channels=2), SR))
    assert summary["frames"] == 12 and summary["audio"]
    return path, clip


def test_round_trip_frames_fps_size_and_audio(clip_file):
    path, clip = clip_file
    loaded = video_io.load_video(path)
    assert loaded.frames.shape == (12, 48, 64, 3)
    assert loaded.frames.dtype == torch.float32
    assert loaded.frame_rate == 24 and loaded.fps == 24.0
    error = (loaded.frames - clip).abs().mean().item()
    assert error < 0.01, error  # crf 0: only the 4:2:0 chroma subsampling and 8-bit rounding remain
    assert which_frames(loaded.frames, clip) == list(range(12))
    wave, rate = loaded.audio
    assert rate == SR and wave.shape == (2, SR // 2)  # exactly the 0.5 s under the 12 frames
    assert abs(dominant_frequency(wave[0], rate) - 440.0) < 5.0
    # aligned in time: AAC is lossy, but the waveform must match sample for sample, not just in pitch
    middle = slice(2000, 20000)
    assert np.abs(wave[0, middle] - sine(0.5)[0, middle]).mean() < 0.05


def test_saved_mp4_is_playable_h264_yuv420p_faststart(clip_file):
    path, _ = clip_file
    with av.open(path) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert container.streams.audio[0].codec_context.name == "aac"
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(decoded) == 12 and decoded[0].shape == (48, 64, 3)
    with open(path, "rb") as handle:
        head = handle.read()
    assert head.find(b"moov") < head.find(b"mdat")  # +faststart: index first, plays while downloading


def test_odd_size_is_padded_with_edge_pixels(tmp_path):
    clip = synthetic_clip(frames=4, height=47, width=63)
    path = str(tmp_path / "odd.mp4")
    summary = video_io.write_video(path, clip, 24, crf=0)
    assert (summary["width"], summary["height"]) == (64, 48)
    loaded = video_io.load_video(path).frames
    assert loaded.shape == (4, 48, 64, 3)
    assert (loaded[:, :47, :63] - clip).abs().mean().item() < 0.01  # every source pixel kept, no resample
    assert (loaded[:, 47, :63] - clip[:, 46]).abs().mean().item() < 0.02  # the extra row repeats the edge
    assert (loaded[:, :47, 63] - clip[:, :, 62]).abs().mean().item() < 0.02


def test_exact_rate_snaps_ntsc_family():
    assert video_io.exact_rate(23.976) == Fraction(24000, 1001)
    assert video_io.exact_rate(29.97) == Fraction(30000, 1001)
    assert video_io.exact_rate(59.94) == Fraction(60000, 1001)
    assert video_io.exact_rate(24.0) == 24
    assert video_io.exact_rate(12.5) == Fraction(25, 2)
    assert video_io.exact_rate(Fraction(30000, 1001)) == Fraction(30000, 1001)
    with pytest.raises(ValueError):
        video_io.exact_rate(0)
    with pytest.raises(ValueError):
        video_io.exact_rate(float("nan"))


def test_fractional_fps_30000_1001(tmp_path):
    path = str(tmp_path / "ntsc.mp4")
    video_io.write_video(path, synthetic_clip(), 29.97, crf=10)
    with av.open(path) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == Fraction(30000, 1001)
        times = [frame.time for frame in container.decode(video=0)]
    assert times[11] == pytest.approx(11 * 1001 / 30000, abs=1e-9)  # no drift: time base is exactly 1001/30000
    loaded = video_io.load_video(path)
    assert loaded.frame_rate == Fraction(30000, 1001)
    assert loaded.frames.shape[0] == 12
    assert video_io.probe_video(path).duration == pytest.approx(12 * 1001 / 30000, abs=1e-6)


def test_skip_every_nth_and_cap(clip_file):
    path, clip = clip_file
    loaded = video_io.load_video(path, skip_first_frames=2, select_every_nth=3, frame_load_cap=3)
    assert which_frames(loaded.frames, clip) == [2, 5, 8]
    assert loaded.fps == 8.0  # 24 / 3: plays the selection at the original speed
    assert loaded.start == pytest.approx(2 / 24)
    wave, rate = loaded.audio
    assert wave.shape[1] == round(3 / 8 * rate)
    assert which_frames(video_io.load_video(path, frame_load_cap=5).frames, clip) == [0, 1, 2, 3, 4]


def test_cap_stops_decoding_early(clip_file, monkeypatch):
    path, _ = clip_file
    produced = []
    real_timeline = video_io._timeline

    def counting(*args, **kwargs):
        for item in real_timeline(*args, **kwargs):
            produced.append(item[1])
            yield item

    monkeypatch.setattr(video_io, "_timeline", counting)
    assert video_io.load_video(path, frame_load_cap=2).frames.shape[0] == 2
    assert len(produced) == 2


def test_force_rate_resamples_by_timestamps(clip_file):
    path, clip = clip_file
    down = video_io.load_video(path, force_rate=12)
    assert down.fps == 12.0 and which_frames(down.frames, clip) == [0, 2, 4, 6, 8, 10]
    up = video_io.load_video(path, force_rate=48)
    assert which_frames(up.frames, clip) == [i // 2 for i in range(24)]
    odd = video_io.load_video(path, force_rate=10)  # slots at k/10 s show frame floor(2.4 k)
    assert which_frames(odd.frames, clip) == [0, 2, 4, 7, 9]
    combined = video_io.load_video(path, force_rate=12, skip_first_frames=1, select_every_nth=2)
    assert which_frames(combined.frames, clip) == [2, 6, 10] and combined.fps == 6.0


def test_start_time_seeks(clip_file):
    path, clip = clip_file
    loaded = video_io.load_video(path, start_time=0.25)
    assert which_frames(loaded.frames, clip) == list(range(6, 12))
    assert loaded.start == pytest.approx(0.25)
    wave = loaded.audio[0]
    assert wave.shape[1] == round(0.25 * SR)
    # sample-accurate after the seek, first samples included (the decoder is warmed up before `start`)
    assert np.abs(wave[0] - sine(0.5)[0, round(0.25 * SR):]).max() < 0.02
    with pytest.raises(video_io.NoFramesError):
        video_io.load_video(path, start_time=5.0)


def test_resize_keeps_aspect_when_one_side_is_zero(clip_file):
    path, _ = clip_file
    assert video_io.load_video(path, width=32).frames.shape[1:3] == (24, 32)
    assert video_io.load_video(path, height=96).frames.shape[1:3] == (96, 128)
    assert video_io.load_video(path, width=20, height=10).frames.shape[1:3] == (10, 20)
    assert video_io.output_size(1920, 1080, 0, 720) == (1280, 720)


def test_audio_is_cut_or_padded_to_the_video_length(tmp_path):
    long_path, short_path = str(tmp_path / "long.mp4"), str(tmp_path / "short.mp4")
    video_io.write_video(long_path, synthetic_clip(), 24, audio=(sine(2.0), SR))
    video_io.write_video(short_path, synthetic_clip(), 24, audio=(sine(0.2), SR))
    for path in (long_path, short_path):
        with av.open(path) as container:
            stream = container.streams.audio[0]
            assert float(stream.duration * stream.time_base) == pytest.approx(0.5, abs=1e-3)
    wave, _ = audio_io.decode_audio(short_path)
    assert wave.shape[1] == SR // 2
    assert np.abs(wave[0, :8000]).max() > 0.3
    assert np.abs(wave[0, int(0.3 * SR):]).max() < 0.02  # the padding is silence


def test_uncommon_sample_rate_is_resampled_for_aac(tmp_path):
    path = str(tmp_path / "rate.mp4")
    video_io.write_video(path, synthetic_clip(), 24, audio=(sine(0.5, freq=300, rate=22000), 22000))
    wave, rate = audio_io.decode_audio(path)
    assert rate == 48000 and wave.shape[1] == 24000
    assert abs(dominant_frequency(wave[0], rate) - 300.0) < 5.0


def test_video_without_audio_loads_no_audio(tmp_path):
    path = str(tmp_path / "silent.mp4")
    video_io.write_video(path, synthetic_clip(frames=3), 24)
    assert not video_io.probe_video(path).has_audio
    assert video_io.load_video(path).audio is None
    assert audio_io.decode_audio(path) is None


def _no_partials(folder):
    return [name for name in os.listdir(folder) if "partial" in name]


def test_failed_encode_leaves_no_file(tmp_path):
    path = str(tmp_path / "fail.mp4")
    open(path, "wb").close()  # the empty placeholder unique_output_path reserves

    def frames():
        clip = synthetic_clip(frames=4)
        for i in range(3):
            yield clip[i]
        raise RuntimeError("renderer crashed mid-way")

    with pytest.raises(RuntimeError, match="mid-way"):
        video_io.write_video(path, frames(), 24)
    assert not os.path.exists(path) and _no_partials(tmp_path) == []

    def mixed_sizes():
        yield synthetic_clip(frames=1)[0]
        yield synthetic_clip(frames=1, height=32, width=32)[0]

    with pytest.raises(ValueError, match="frame 1"):
        video_io.write_video(path, mixed_sizes(), 24)
    assert os.listdir(tmp_path) == []


def test_abort_from_progress_callback_leaves_no_file(tmp_path):
    path = str(tmp_path / "abort.mp4")

    def stop_at_5(done):
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        video_io.write_video(path, synthetic_clip(), 24, on_frame=stop_at_5)
    assert os.listdir(tmp_path) == []


def test_values_outside_0_1_are_clamped(tmp_path):
    path = str(tmp_path / "clamp.mp4")
    clip = synthetic_clip(frames=2)
    video_io.write_video(path, clip * 3.0 - 1.0, 24, crf=0)
    loaded = video_io.load_video(path).frames
    expected = (clip * 3.0 - 1.0).clamp(0, 1)
    assert (loaded - expected).abs().mean().item() < 0.02


@pytest.mark.parametrize("fmt", ["flac", "wav"])
def test_save_audio_file_round_trip(tmp_path, fmt):
    path = str(tmp_path / f"tone.{fmt}")
    wave = sine(0.3, channels=2)
    wave[1] *= -1.0
    audio_io.save_audio_file(path, wave, SR, fmt)
    back, rate = audio_io.decode_audio(path)
    assert rate == SR and back.shape == wave.shape
    assert np.abs(back - wave).max() < 2.0 / 32767  # 16-bit, otherwise lossless
    with av.open(path) as container:
        assert container.streams.audio[0].codec_context.name == ("flac" if fmt == "flac" else "pcm_s16le")


@pytest.mark.parametrize("rotation, turns", [(-90, -1), (90, 1), (180, 2)])
def test_display_rotation_is_applied(tmp_path, rotation, turns):
    """Phones store portrait video as landscape + a display matrix; frames must come out upright."""
    path = str(tmp_path / "phone.mp4")
    source = (synthetic_clip(frames=3) * 255).round().to(torch.uint8).numpy()
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"crf": "0"}
        stream.set_display_rotation(rotation)
        for i, rgb in enumerate(source):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    loaded = video_io.load_video(path).frames
    upright = torch.from_numpy(np.ascontiguousarray(np.rot90(source, k=turns, axes=(1, 2)))).float() / 255
    assert loaded.shape == upright.shape
    assert (loaded - upright).abs().mean().item() < 0.02
    if turns % 2:
        assert video_io.load_video(path, width=24).frames.shape[1:3] == (32, 24)  # resize in upright terms


@pytest.mark.parametrize("fmt, codec, pix_fmt, options", [
    ("webm", "libvpx-vp9", "yuv420p", {"crf": "10", "b": "0"}),
    ("mov", "prores_ks", "yuv422p10le", {}),
    ("avi", "mjpeg", "yuvj420p", {"q:v": "2"}),  # full-range JPEG levels
])
def test_loads_other_codecs_and_containers(tmp_path, fmt, codec, pix_fmt, options):
    if codec not in av.codecs_available:
        pytest.skip(f"{codec} not in this FFmpeg build")
    clip = synthetic_clip(frames=6)
    source = (clip * 255).round().to(torch.uint8).numpy()
    path = str(tmp_path / f"clip.{fmt}")
    with av.open(path, "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=24)
        stream.width, stream.height, stream.pix_fmt, stream.options = 64, 48, pix_fmt, options
        for i, rgb in enumerate(source):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix_fmt)
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    loaded = video_io.load_video(path)
    assert loaded.frames.shape == (6, 48, 64, 3) and loaded.fps == 24.0
    assert (loaded.frames - clip).abs().mean().item() < 0.02
    assert which_frames(loaded.frames, clip) == list(range(6))


def test_loads_animated_gif(tmp_path):
    from PIL import Image
    levels = [0, 60, 120, 180, 240]
    images = [Image.fromarray(np.full((30, 40, 3), level, np.uint8)) for level in levels]
    path = str(tmp_path / "anim.gif")
    images[0].save(path, save_all=True, append_images=images[1:], duration=100, loop=0)
    loaded = video_io.load_video(path)
    assert loaded.frames.shape == (5, 30, 40, 3) and loaded.fps == 10.0
    assert loaded.frames.mean(dim=(1, 2, 3)).mul(255).round().tolist() == levels
    assert video_io.load_video(path, force_rate=20).frames.shape[0] == 10


def test_audio_span_equals_the_same_slice_of_a_full_decode(tmp_path):
    """Any start (fractional sample positions, before/after the seek threshold) gives exactly the samples
    a full decode has there: no 1-sample gaps between frames, no untrimmed encoder delay after a seek."""
    path = str(tmp_path / "tone.mp4")
    video_io.write_video(path, synthetic_clip(frames=24), 24, audio=(sine(1.0, freq=523.0), SR))
    full, _ = audio_io.decode_audio(path)
    for start in (0.01, 0.125, 0.21, 0.3377, 0.6):
        part, _ = audio_io.decode_audio(path, start=start, duration=0.3)
        first = round(start * SR)
        assert part.shape[1] == round(0.3 * SR)
        assert np.abs(part - full[:, first:first + part.shape[1]]).max() < 1e-4, start
