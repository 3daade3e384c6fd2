"""Continuity guard: lip-sync offset (mouth-open envelope vs silero-vad-gated speech envelope) in frames, flagged
over one frame; identity drift against the actor card's references; both stored as Dailies machine notes."""
import io
import shutil
import subprocess
import wave

import numpy as np
import pytest
import torch

from vibeboard.foundry import continuity as C

FPS = 24


def _speech():
    if not shutil.which("espeak-ng"):
        pytest.skip("espeak-ng not installed")
    wav = subprocess.run(["espeak-ng", "--stdout", "-s", "120", "hello there, how are you today my friend"],
                         capture_output=True, check=True).stdout
    with wave.open(io.BytesIO(wav)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768
        return pcm[None], w.getframerate()


def _talking_frames(envelope, delay):
    """A face whose dark mouth opens with the speech envelope, `delay` frames late."""
    n = len(envelope)
    env = np.roll(envelope / (envelope.max() + 1e-9), delay)
    if delay > 0:
        env[:delay] = 0
    frames = torch.full((n, 48, 48, 3), 0.8)
    for i, e in enumerate(env):
        h = int(round(e * 5))
        if h:
            frames[i, 34 - h:34 + h, 18:30] = 0.05
    return frames


@pytest.mark.parametrize("delay,flagged", [(0, False), (3, True)])
def test_lipsync_offset_in_frames(delay, flagged):
    audio, rate = _speech()
    frames_n = int(audio.shape[1] / rate * FPS)
    speech = C.speech_envelope(audio, rate, FPS, frames_n)
    assert (speech > 0).sum() > frames_n // 3  # silero found the speech
    report = C.lipsync_report(_talking_frames(speech, delay), audio, rate, FPS)
    assert report["offset_frames"] == delay and report["flagged"] is flagged


def test_identity_drift_and_dailies_notes(tmp_path):
    from vibeboard.dailies.store import DailiesStore
    from vibeboard.models import tiny
    torch.manual_seed(0)
    embed = C.vision_embedder(tiny.build_clip(), image_size=32)
    ref = torch.rand(2, 32, 32, 3) * 0.2 + 0.4
    frames = ref[:1].repeat(32, 1, 1, 1) + torch.randn(32, 32, 32, 3) * 0.01
    frames[16:] = torch.rand(16, 32, 32, 3)  # someone else from frame 16 on
    report = C.identity_report(frames, ref, embed, every=4, threshold=0.99)  # a tiny random model separates weakly
    assert report["drift_ranges"] and report["drift_ranges"][0][0] == 16 and report["drift_ranges"][-1][1] == 31
    notes = C.notes_for({"offset_frames": 3, "correlation": 0.8, "flagged": True}, report, 32, "Ana Reyes")
    store = DailiesStore(str(tmp_path / "d.sqlite"))
    v = store.add_version("sh010", str(tmp_path / "x.mp4"), frames=32, fps=24)
    stored = C.attach(store, v["id"], notes)
    assert [n["kind"] for n in stored] == ["machine"] * len(notes)
    assert "3 frames late" in stored[0]["text"] and stored[1]["start_frame"] == 16


def test_performance_check_node_stores_a_lipsync_note_on_the_version(tmp_path, monkeypatch):
    from vibeboard.common import runtime
    from vibeboard.dailies.nodes import open_store
    from vibeboard.foundry.nodes import VBPerformanceCheck
    from vibeboard.media.video import write_video
    audio, rate = _speech()
    n = int(audio.shape[1] / rate * FPS)
    frames = _talking_frames(C.speech_envelope(audio, rate, FPS, n), 4)
    monkeypatch.setitem(runtime._dirs, "output", str(tmp_path))
    path = str(tmp_path / "take.mp4")
    write_video(path, frames, FPS, audio=(audio, rate), crf=0)
    v = open_store("t", "foundry").add_version("sh010", path, frames=n, fps=FPS)
    report = __import__("json").loads(VBPerformanceCheck().check("foundry", v["id"])[0])
    assert report["lipsync"]["offset_frames"] == 4 and report["notes"][0]["kind"] == "machine"
