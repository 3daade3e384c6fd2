"""Conform: the cut renders to an MP4 with exactly duration × fps frames, the right source frame at every
record frame (dissolves mixed from the handles), sound in sync (a clap: white frame + 1 kHz blip), and a
clip regenerated in place keeps its cut points."""
import numpy as np
import pytest

otio = pytest.importorskip("opentimelineio")

from sequencer_media import closest_source, source_frames, tone, write_clip  # noqa: E402
from vibeboard.media import audio as audio_io  # noqa: E402
from vibeboard.media import video as video_io  # noqa: E402
from vibeboard.sequencer import conform, timeline as tl  # noqa: E402

FPS = 24


def _cut(paths, dissolve=12, source_in=6):
    cut = tl.new_timeline("conform", FPS, 64, 48)
    video = tl.video_track(cut)
    for i, path in enumerate(paths):
        tl.append_clip(video, tl.make_clip(f"s{i}", path, FPS, source_in, 24, 48, {"seed": i}), dissolve if i == 1 else 0)
    return cut


def test_render_has_exact_frames_and_the_right_source_frame_everywhere(tmp_path):
    paths = [write_clip(tmp_path / f"c{i}.mp4", 48, clip_id=i) for i in range(3)]
    out = str(tmp_path / "cut.mp4")
    result = conform.render(_cut(paths), out, crf=0, preset="ultrafast")
    assert result["frames"] == result["expected_frames"] == 72
    info = video_io.probe_video(out)
    assert info.frame_count == 72 and abs(info.duration - 3.0) < 1e-6
    table = source_frames(paths)
    decoded = [rgb for _, rgb in video_io.iter_video_frames(out)]
    assert len(decoded) == 72
    # outside the dissolve (frames 18..29) every record frame is one source frame: clip i, frame 6 + offset
    for t in list(range(0, 18)) + list(range(30, 72)):
        clip = 0 if t < 24 else 1 if t < 48 else 2
        assert closest_source(decoded[t], table) == (clip, 6 + t - 24 * clip), t
    # inside it, a mix of clip 0 playing on into its tail handle and clip 1 starting in its head handle
    for t in range(18, 30):
        w = (t - 18 + 0.5) / 12
        a, b = table[(0, 6 + t)], table[(1, 6 + t - 24)]
        frame = decoded[t].astype(np.float32)
        assert float(np.abs(frame - ((1 - w) * a + w * b)).mean()) < 3.0, t  # re-encoding costs ~2 levels
        if 21 <= t <= 26:  # mid-dissolve: clearly neither picture alone
            assert min(float(np.abs(frame - a).mean()), float(np.abs(frame - b).mean())) > 8.0, t


def test_render_refuses_a_dissolve_without_handles(tmp_path):
    paths = [write_clip(tmp_path / f"c{i}.mp4", 24, clip_id=i) for i in range(2)]
    cut = tl.new_timeline("nohandles", FPS, 64, 48)
    video = tl.video_track(cut)
    tl.append_clip(video, tl.make_clip("a", paths[0], FPS, 0, 24, 24))
    tl.append_clip(video, tl.make_clip("b", paths[1], FPS, 0, 24, 24), 12)
    with pytest.raises(conform.ConformError, match="handle frames after clip 'a'"):
        conform.render(cut, str(tmp_path / "x.mp4"))
    assert not (tmp_path / "x.mp4").exists()


def test_clap_marker_stays_in_sync_through_the_cut(tmp_path):
    # clip 2 carries a clap at its source frame 20 (white frame + blip at 20/24 s); it sits at record 24..47
    # with source_in 6, so the clap lands on record frame 24 + 14 = 38
    plain = write_clip(tmp_path / "a.mp4", 48, clip_id=0, audio=(tone(2.0), 48000))
    clap = write_clip(tmp_path / "b.mp4", 48, clip_id=1, flash_frame=20,
                      audio=(tone(2.0, blip_at=20 / FPS), 48000))
    cut = tl.new_timeline("clap", FPS, 64, 48)
    video = tl.video_track(cut)
    tl.append_clip(video, tl.make_clip("a", plain, FPS, 6, 24, 48))
    tl.append_clip(video, tl.make_clip("b", clap, FPS, 6, 24, 48))
    out = str(tmp_path / "cut.mp4")
    conform.render(cut, out, crf=0, preset="ultrafast")
    frames = [rgb for _, rgb in video_io.iter_video_frames(out)]
    white = [i for i, f in enumerate(frames) if f.mean() > 240]
    assert white == [38]
    wave, rate = audio_io.decode_audio(out)
    envelope = np.abs(wave).max(axis=0)
    onset = int(np.nonzero(envelope > 0.4)[0][0])
    assert round(onset / rate * FPS) == 38  # A/V offset 0 frames
    assert abs(onset / rate - 38 / FPS) < 0.5 / FPS


def test_regenerate_in_place_swaps_media_and_keeps_cut_points(tmp_path):
    paths = [write_clip(tmp_path / f"c{i}.mp4", 48, clip_id=i) for i in range(3)]
    cut = _cut(paths)
    # clip 2 re-rendered with 8 more frames before its first used frame (handles for the dissolve)
    redo = write_clip(tmp_path / "c1_v2.mp4", 56, clip_id=3)
    updated = tl.replace_media(cut, "s1", redo, 56, handles_before=14, recipe_update={"seed": 7, "handles": 14})
    before, after = tl.summary(cut), tl.summary(updated)
    assert [c["record"] for c in after["tracks"][0]["clips"]] == [c["record"] for c in before["tracks"][0]["clips"]]
    assert after["tracks"][0]["transitions"] == before["tracks"][0]["transitions"]
    assert after["tracks"][0]["clips"][1]["recipe"]["seed"] == 7
    assert tl.check_handles(tl.video_track(updated)) == []
    out = str(tmp_path / "cut.mp4")
    conform.render(updated, out, crf=0, preset="ultrafast")
    table = source_frames(paths[:1] + [redo] + paths[2:])
    decoded = [rgb for _, rgb in video_io.iter_video_frames(out)]
    assert closest_source(decoded[35], table) == (1, 14 + 35 - 24)  # now from the new media
