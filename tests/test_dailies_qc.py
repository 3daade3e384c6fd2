"""Automatic QC per version: exactly the 6 black frames and the 1 s freeze of a test clip, a 3-frame A/V offset
flagged (and a clip in sync not flagged), loudness above −1 dBTP flagged, focus inspection run; findings stored
as machine notes on the version."""
import numpy as np
import pytest

from sequencer_media import tone, write_clip
from vibeboard.dailies import qc
from vibeboard.dailies.store import DailiesStore

FPS = 24


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    # 96 frames: black 30..35, frame 60 held through 83 (1 s), a clap on frame 12 whose blip is 3 frames late
    path = tmp_path_factory.mktemp("qc") / "faulty.mp4"
    return write_clip(path, 96, black=range(30, 36), freeze=[(60, 83)], flash_frame=12,
                      audio=(tone(4.0, blip_at=15 / FPS), 48000))


def test_qc_finds_exactly_the_black_frames_the_freeze_and_the_offset(faulty):
    report = qc.inspect_version(faulty, "sh010", focus=False)
    kinds = [(n["kind"], n["start_frame"], n["end_frame"]) for n in report["notes"]]
    assert ("black_frames", 30, 35) in kinds
    assert ("frozen_frames", 60, 83) in kinds
    assert ("av_offset", 12, 12) in kinds
    assert len(kinds) == 3
    assert "A/V offset 3 frames" in next(n["text"] for n in report["notes"] if n["kind"] == "av_offset")
    assert report["av_sync"]["offset_frames"] == 3


def test_clip_in_sync_and_clean_gets_no_notes(tmp_path):
    path = write_clip(tmp_path / "clean.mp4", 48, flash_frame=12, audio=(tone(2.0, blip_at=12 / FPS), 48000))
    report = qc.inspect_version(path, "sh020", focus=False)
    assert report["notes"] == [] and report["av_sync"]["offset_frames"] == 0


def test_hot_audio_and_flicker_are_flagged(tmp_path):
    frames = 48
    loud = np.clip(tone(2.0, level=1.0) * 1.4, -1, 1)
    path = write_clip(tmp_path / "hot.mp4", frames, audio=(loud, 48000))
    kinds = {n["kind"] for n in qc.inspect_version(path, focus=False)["notes"]}
    assert "loudness" in kinds
    rng = np.random.default_rng(0)
    base = [np.full((48, 64, 3), 110 + (30 if i % 2 else 0) + int(rng.integers(0, 3)), np.uint8) for i in range(frames)]
    assert qc.flicker(qc.luma_means(base))["flicker"]
    assert not qc.flicker(qc.luma_means([base[0]] * frames))["flicker"]
    assert qc.black_ranges([base[0]] * 3 + [base[0] * 0] * 2, FPS) == [[3, 4]]
    assert qc.freeze_ranges([base[0]] * 20, FPS, 0.5) == [[0, 19]]


def test_focus_inspection_runs_on_every_version_and_notes_are_stored(faulty, tmp_path):
    store = DailiesStore(str(tmp_path / "d.sqlite"))
    version = store.add_version("sh010", faulty, frames=96, fps=FPS)
    report = qc.inspect_version(faulty, "sh010", focus=True)
    assert report["focus"]["shot"] == "sh010" and report["focus"]["analysed_frames"] >= 8
    qc.attach(store, version["id"], report)
    machine = [n for n in store.notes(version_id=version["id"]) if n["kind"] == "machine"]
    assert len(machine) == len(report["notes"]) >= 3 and all(n["author"] == "qc" for n in machine)
