"""The media node classes called the way ComfyUI calls them (keyword arguments, classmethods on the class)."""
import os

import av
import numpy as np
import pytest
import torch

from vibeboard.common import runtime
from vibeboard.common.runtime import InterruptProcessing, NodeInputError
from vibeboard.media import nodes
from vibeboard.media import video as video_io
from vibeboard.media.nodes import VBLoadVideo, VBPreviewVideo, VBSaveAudio, VBSaveVideo


def clip(frames=12, height=48, width=64):
    yy, xx = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    out = torch.stack([torch.stack([(xx + i / frames) % 1.0, yy, 0.5 * torch.ones_like(xx)], -1)
                       for i in range(frames)])
    return out * 0.7 + 0.15


def tone(seconds=0.5, rate=44100, channels=2):
    t = torch.arange(int(seconds * rate)) / rate
    wave = 0.4 * torch.sin(2 * torch.pi * 440.0 * t)
    return {"waveform": wave.repeat(1, channels, 1), "sample_rate": rate}


@pytest.fixture
def dirs(tmp_path):
    folders = {kind: tmp_path / kind for kind in ("input", "output", "temp")}
    for folder in folders.values():
        folder.mkdir()
    runtime.set_host_dirs(output=str(folders["output"]), input=str(folders["input"]), temp=str(folders["temp"]))
    runtime.set_host_hooks(None, None)
    yield folders
    runtime.set_host_hooks(None, None)


def test_save_then_load_round_trip(dirs):
    out = VBSaveVideo().save(images=clip(), fps=24.0, filename_prefix="vibeboard/video", crf=0,
                             preset="ultrafast", audio=tone())
    entry = out["ui"]["images"][0]
    assert entry == {"filename": "video_00001_.mp4", "subfolder": "vibeboard",
                     "type": "output", "format": "video/mp4"}
    assert out["ui"]["animated"] == [True]
    (path,) = out["result"]
    assert path == str(dirs["output"] / "vibeboard" / "video_00001_.mp4") and os.path.getsize(path) > 0
    assert VBSaveVideo.RETURN_TYPES == ("STRING",) and VBSaveVideo.RETURN_NAMES == ("path",)
    assert VBSaveVideo.OUTPUT_NODE is True

    os.replace(path, dirs["input"] / "shot.mp4")
    spec = VBLoadVideo.INPUT_TYPES()
    choices, options = spec["required"]["video"]
    assert choices == ["shot.mp4"] and options["video_upload"] is True
    images, audio, fps, count = VBLoadVideo().load(video="shot.mp4", frame_load_cap=0, skip_first_frames=0,
                                                   select_every_nth=1, force_rate=0.0, custom_width=0,
                                                   custom_height=0, start_time=0.0)
    assert images.shape == (12, 48, 64, 3) and count == 12 and fps == 24.0
    assert (images - clip()).abs().mean().item() < 0.01
    assert audio["sample_rate"] == 44100 and tuple(audio["waveform"].shape) == (1, 2, 22050)
    assert audio["waveform"].dtype == torch.float32


def test_every_input_has_a_tooltip_and_types_are_consistent(dirs):
    for cls in (VBLoadVideo, VBSaveVideo, VBPreviewVideo, VBSaveAudio):
        spec = cls.INPUT_TYPES()
        for section in ("required", "optional"):
            for name, entry in spec.get(section, {}).items():
                assert "tooltip" in entry[1], (cls.__name__, name)
        assert cls.CATEGORY == "VibeBoard/Media" and hasattr(cls, cls.FUNCTION)
        assert len(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)) == len(cls.RETURN_TYPES)
    assert set(nodes.NODE_CLASS_MAPPINGS) == set(nodes.NODE_DISPLAY_NAME_MAPPINGS)


def _saved_to_input(dirs, name="clip.mp4", **kwargs):
    path = VBSaveVideo().save(images=clip(), fps=24.0, filename_prefix="tmp/clip", crf=0,
                              preset="ultrafast", **kwargs)["result"][0]
    target = dirs["input"] / name
    os.replace(path, target)
    return target


def test_load_options_and_silent_video(dirs):
    _saved_to_input(dirs)
    images, audio, fps, count = VBLoadVideo().load(video="clip.mp4", frame_load_cap=2, skip_first_frames=3,
                                                   select_every_nth=4, custom_width=32)
    assert images.shape == (2, 24, 32, 3) and count == 2 and fps == 6.0
    # no audio stream: an AUDIO dict with zero samples, never None (savers skip it)
    assert tuple(audio["waveform"].shape) == (1, 1, 0) and audio["sample_rate"] == 44100
    resaved = VBSaveVideo().save(images=images, fps=fps, filename_prefix="again", crf=19, preset="veryfast",
                                 audio=audio)["result"][0]
    with av.open(resaved) as container:
        assert not container.streams.audio and container.streams.video[0].average_rate == 6


def test_is_changed_follows_the_file_content(dirs):
    target = _saved_to_input(dirs)
    first = VBLoadVideo.IS_CHANGED(video="clip.mp4", video_path="")
    assert first == VBLoadVideo.IS_CHANGED(video="clip.mp4", video_path="") and len(first) == 64
    video_io.write_video(str(target), clip(frames=3), 24)
    assert VBLoadVideo.IS_CHANGED(video="clip.mp4", video_path="") != first
    assert VBLoadVideo.IS_CHANGED(video="absent.mp4") == ""


def test_missing_file_errors_name_node_and_input(dirs):
    message = VBLoadVideo.VALIDATE_INPUTS(video="absent.mp4", video_path="")
    assert isinstance(message, str)
    assert "Load Video (VibeBoard)" in message and "'video'" in message and "absent.mp4" in message
    with pytest.raises(NodeInputError) as info:
        VBLoadVideo().load(video="absent.mp4")
    assert info.value.node == "Load Video (VibeBoard)" and info.value.input_name == "video"
    with pytest.raises(NodeInputError) as info:
        VBLoadVideo().load(video="", video_path=str(dirs["temp"] / "nope.mp4"))
    assert info.value.input_name == "video_path" and "nope.mp4" in str(info.value)
    assert "no video chosen" in VBLoadVideo.VALIDATE_INPUTS(video="", video_path="")


def test_traversal_and_absolute_names_are_refused(dirs):
    secret = dirs["output"] / "secret.mp4"
    video_io.write_video(str(secret), clip(frames=2), 24)
    for name in ("../output/secret.mp4", str(secret), "sub/../../output/secret.mp4", "C:\\x.mp4"):
        message = VBLoadVideo.VALIDATE_INPUTS(video=name, video_path="")
        assert isinstance(message, str) and "'video'" in message, name
        with pytest.raises(NodeInputError) as info:
            VBLoadVideo().load(video=name)
        assert info.value.input_name == "video"
    os.symlink(secret, dirs["input"] / "link.mp4")
    assert "outside" in VBLoadVideo.VALIDATE_INPUTS(video="link.mp4")
    # the path override may be absolute (documented), and annotated names reach the output folder on purpose
    assert VBLoadVideo.VALIDATE_INPUTS(video="", video_path=str(secret)) is True
    assert VBLoadVideo().load(video="", video_path=str(secret))[3] == 2
    assert VBLoadVideo().load(video="secret.mp4 [output]")[3] == 2


def test_validate_inputs_with_linked_path_defers_to_run_time(dirs):
    assert VBLoadVideo.VALIDATE_INPUTS(video="absent.mp4", video_path=None,
                                       input_types={"video_path": "STRING"}) is True
    message = VBLoadVideo.VALIDATE_INPUTS(video="absent.mp4", input_types={"start_time": "IMAGE"})
    assert "start_time" in message and "IMAGE" in message


def test_start_time_past_the_end_is_a_clear_error(dirs):
    _saved_to_input(dirs)
    with pytest.raises(NodeInputError, match="no frames selected"):
        VBLoadVideo().load(video="clip.mp4", start_time=10.0)


def test_not_a_video_is_a_clear_error(dirs):
    (dirs["input"] / "junk.mp4").write_bytes(b"this is not a video" * 50)
    with pytest.raises(NodeInputError) as info:
        VBLoadVideo().load(video="junk.mp4")
    assert info.value.input_name == "video" and "junk.mp4" in str(info.value)


@pytest.mark.parametrize("images, expected", [
    (torch.zeros((0, 8, 8, 3)), "empty"),
    (torch.zeros((8, 8, 3)), "shape"),
    (torch.zeros((2, 8, 8, 5)), "channels"),
    (torch.full((2, 8, 8, 3), float("nan")), "NaN"),
    ("not an image", "IMAGE tensor"),
])
def test_bad_image_inputs(dirs, images, expected):
    with pytest.raises(NodeInputError, match=expected) as info:
        VBSaveVideo().save(images=images, fps=24.0)
    assert info.value.node == "Save Video MP4 (VibeBoard)" and info.value.input_name == "images"
    assert os.listdir(dirs["output"]) == []


def test_bad_fps_crf_audio_and_prefix(dirs):
    for kwargs, name in (({"fps": 0.0}, "fps"), ({"fps": float("inf")}, "fps"), ({"crf": 60}, "crf"),
                         ({"preset": "warp"}, "preset"), ({"filename_prefix": "../../escape"}, "filename_prefix"),
                         ({"audio": {"waveform": torch.full((1, 1, 10), float("inf")), "sample_rate": 8000}},
                          "audio"), ({"audio": {"samples": 1}}, "audio")):
        with pytest.raises(NodeInputError) as info:
            VBSaveVideo().save(images=clip(frames=2), **kwargs)
        assert info.value.input_name == name and info.value.node == "Save Video MP4 (VibeBoard)"
    assert [p for p in dirs["output"].rglob("*") if p.is_file()] == []


def test_out_of_range_values_are_clamped(dirs):
    path = VBSaveVideo().save(images=torch.full((2, 16, 16, 3), 3.0), fps=24.0, crf=0)["result"][0]
    frames = video_io.load_video(path).frames
    assert frames.min().item() > 0.98


def test_progress_and_interrupt(dirs):
    seen = []
    runtime.set_host_hooks(lambda value, total, preview: seen.append((value, total)), lambda: False)
    VBSaveVideo().save(images=clip(), fps=24.0, preset="ultrafast")
    assert seen[-1] == (12, 12) and len(seen) >= 12

    calls = {"n": 0}

    def interrupt_after_5():
        calls["n"] += 1
        return calls["n"] > 5

    runtime.set_host_hooks(lambda *a: None, interrupt_after_5)
    with pytest.raises(InterruptProcessing):
        VBSaveVideo().save(images=clip(), fps=24.0, filename_prefix="stopped")
    assert not [p for p in dirs["output"].rglob("*stopped*")]  # no half file, no empty placeholder


def test_preview_goes_to_temp(dirs):
    out = VBPreviewVideo().preview(images=clip(frames=4), fps=23.976, audio=tone(0.1, channels=1))
    entry = out["ui"]["images"][0]
    assert entry["type"] == "temp" and entry["format"] == "video/mp4"
    path = dirs["temp"] / entry["subfolder"] / entry["filename"]
    with av.open(str(path)) as container:
        assert container.streams.video[0].average_rate.denominator == 1001
        assert container.streams.audio[0].codec_context.channels == 1
    assert VBPreviewVideo.RETURN_TYPES == ()


def test_save_audio_node(dirs):
    out = VBSaveAudio().save(audio=tone(0.25), filename_prefix="vibeboard/voice", format="wav")
    (path,) = out["result"]
    assert out["ui"]["audio"] == [{"filename": "voice_00001_.wav", "subfolder": "vibeboard", "type": "output"}]
    with av.open(path) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.sample_rate == 44100 and stream.codec_context.channels == 2
    with pytest.raises(NodeInputError, match="no samples"):
        VBSaveAudio().save(audio={"waveform": torch.zeros((1, 1, 0)), "sample_rate": 44100})
    flac = VBSaveAudio().save(audio=tone(0.1), format="flac")["result"][0]
    assert flac.endswith(".flac") and os.path.getsize(flac) > 0


def test_audio_round_trips_through_the_nodes(dirs):
    source = tone(1.0, channels=1)
    _saved_to_input(dirs, name="talk.mp4", audio=source)
    _, audio, _, _ = VBLoadVideo().load(video="talk.mp4", start_time=0.125)
    wave = audio["waveform"][0, 0].numpy()
    assert wave.shape[0] == round(0.375 * 44100)  # the clip is 0.5 s: audio stops with the frames
    expected = source["waveform"][0, 0, int(0.125 * 44100):][: wave.shape[0]].numpy()
    error = np.abs(wave - expected)
    assert error[:-2048].max() < 0.02  # in sync after the seek, to the sample
    assert error.argmax() > len(error) - 2048  # only the hard cut at the end of the track rings
