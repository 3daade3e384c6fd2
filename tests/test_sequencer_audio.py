"""Audio: a mix normalised to EBU R128 measures −23.0 ±0.1 LUFS and ≤ −1 dBTP (FFmpeg ebur128); the Netflix preset
hits −27 ±1 dialogue-gated on a speech + music mix; music ducks under dialogue; fades and gains apply."""
import numpy as np
import pytest

pytest.importorskip("pyloudnorm")
pytest.importorskip("silero_vad")
otio = pytest.importorskip("opentimelineio")

from sequencer_media import speech, tone, write_clip  # noqa: E402
from vibeboard.media import audio as audio_io  # noqa: E402
from vibeboard.sequencer import audio_mix, loudness, timeline as tl  # noqa: E402

RATE = 48000
LINES = "Where were you last night? I waited by the old pier until the fog came in. I was working. You know that."


def music(seconds, level=0.08):
    t = np.arange(int(seconds * RATE)) / RATE
    rng = np.random.default_rng(0)
    wave = level * (np.sin(2 * np.pi * 196 * t) + 0.5 * np.sin(2 * np.pi * 293.7 * t)) + 0.01 * rng.standard_normal(len(t))
    return np.stack([wave, wave * 0.9]).astype(np.float32)


@pytest.fixture(scope="module")
def dialogue(tmp_path_factory):
    wave = speech(LINES, tmp_path_factory.mktemp("tts") / "dialogue.wav")
    if wave is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    pad = np.zeros((2, RATE // 2), np.float32)
    return np.concatenate([pad, wave, pad], axis=1)


def test_ebu_r128_mix_measures_minus_23_and_true_peak_under_minus_1():
    # music + syllable-like noise bursts (no TTS needed): a dynamic programme with real peaks
    rng = np.random.default_rng(1)
    seconds = 6.0
    bursts = np.zeros(int(seconds * RATE), np.float32)
    for start in np.arange(0.5, 5.5, 0.35):
        n = int(0.18 * RATE)
        a = int(start * RATE)
        bursts[a:a + n] = 0.3 * rng.standard_normal(n) * np.hanning(n)
    mix = music(seconds) + np.stack([bursts, bursts])
    out, report = loudness.normalize(mix * 3.0, RATE, "ebu_r128")  # start hot: the limiter has work to do
    measured = loudness.ebur128(out, RATE)
    assert abs(measured["integrated_lufs"] - (-23.0)) <= 0.1
    assert measured["true_peak_dbtp"] <= -1.0
    assert report["passes"] and report["before"]["integrated_lufs"] > -23.0
    assert abs(loudness.pyloudnorm_lufs(out, RATE) - (-23.0)) < 0.5  # the second meter agrees


def test_true_peak_limiter_engages_on_a_peaky_signal():
    wave = music(3.0, level=0.02)
    wave[:, RATE:RATE + 200] = 0.99  # a loud click far above the programme loudness
    out, report = loudness.normalize(wave, RATE, "streaming")
    assert report["limited"] and report["after"]["true_peak_dbtp"] <= -1.0
    assert abs(report["after"]["integrated_lufs"] - (-14.0)) <= 1.0


def test_netflix_preset_is_dialogue_gated(dialogue):
    bed = music(dialogue.shape[1] / RATE, level=0.2)[:, : dialogue.shape[1]]
    out, report = loudness.normalize(dialogue + bed, RATE, "netflix", dialogue=dialogue)
    assert report["measured_key"] == "dialogue_gated_lufs"
    assert abs(report["after"]["dialogue_gated_lufs"] - (-27.0)) <= 1.0
    assert report["after"]["true_peak_dbtp"] <= -2.0
    assert 0.3 < report["after"]["speech_fraction"] < 0.95
    # gated ≠ integrated here: the music between lines counts only in the integrated figure
    assert abs(report["after"]["integrated_lufs"] - report["after"]["dialogue_gated_lufs"]) > 0.05


def test_silent_audio_is_refused_with_a_clear_message():
    with pytest.raises(ValueError, match="silent"):
        loudness.normalize(np.zeros((2, RATE), np.float32), RATE, "ebu_r128")


def test_music_ducks_under_dialogue_in_the_timeline_mix(dialogue, tmp_path):
    seconds = dialogue.shape[1] / RATE
    dialogue_file = str(tmp_path / "dialogue.flac")
    audio_io.save_audio_file(dialogue_file, dialogue, RATE, "flac")
    music_file = str(tmp_path / "music.flac")
    audio_io.save_audio_file(music_file, music(seconds), RATE, "flac")
    frames = int(seconds * 24)
    video = write_clip(tmp_path / "v.mp4", frames)
    cut = tl.new_timeline("mix", 24, 64, 48)
    tl.video_track(cut).append(tl.make_clip("v", video, 24, 0, frames, frames))
    tl.track(cut, tl.DIALOGUE_TRACK).append(tl.make_clip("dlg", dialogue_file, 24, 0, frames, frames))
    tl.track(cut, tl.MUSIC_TRACK).append(tl.make_clip("mus", music_file, 24, 0, frames, frames,
                                                      {"fade_in": 0.25}))
    plain = audio_mix.track_audio(tl.track(cut, tl.MUSIC_TRACK), 24, RATE, int(frames / 24 * RATE))
    tl.track(cut, tl.MUSIC_TRACK).metadata["vibeboard"] = {"duck_under": tl.DIALOGUE_TRACK, "duck_db": 12.0}
    report = {}
    mixed = audio_mix.mix_timeline(cut, RATE, report)
    speech_spans = report["ducking"][tl.MUSIC_TRACK]["speech_segments"]
    assert speech_spans and speech_spans[0][0] >= 0.3  # the half second of silence at the start is not speech
    music_part = mixed - audio_mix.track_audio(tl.track(cut, tl.DIALOGUE_TRACK), 24, RATE, mixed.shape[1])
    a, b = speech_spans[0]
    mid = slice(int((a + 0.2) * RATE), int((min(b, a + 1.0)) * RATE))
    ratio_db = 20 * np.log10(np.abs(music_part[:, mid]).mean() / np.abs(plain[:, mid]).mean())
    assert -12.5 < ratio_db < -11.5  # ducked by the asked 12 dB while speech plays
    lead = slice(int(0.3 * RATE), int(0.35 * RATE))  # before the first word, after the fade-in
    assert np.allclose(music_part[:, lead], plain[:, lead], atol=1e-4)
    assert np.abs(plain[:, :100]).max() < np.abs(plain[:, RATE // 4:RATE // 4 + 100]).max()  # fade-in


def test_track_gain_applies_in_decibels(tmp_path):
    wave = tone(1.0)
    path = str(tmp_path / "t.flac")
    audio_io.save_audio_file(path, wave, RATE, "flac")
    cut = tl.new_timeline("gain", 24, 64, 48)
    music_track = tl.track(cut, tl.MUSIC_TRACK)
    music_track.append(tl.make_clip("t", path, 24, 0, 24, 24))
    music_track.metadata["vibeboard"] = {"gain_db": -6.0}
    mixed = audio_mix.mix_timeline(cut, RATE)
    assert abs(np.abs(mixed).max() / np.abs(wave).max() - 10 ** (-6 / 20)) < 0.01


def test_netflix_preset_falls_back_to_minus_24_integrated_with_little_dialogue(dialogue):
    short = dialogue[:, : RATE * 2]  # ~1.5 s of speech in 20 s of music
    bed = music(20.0, level=0.2)
    bed[:, : short.shape[1]] += short
    out, report = loudness.normalize(bed, RATE, "netflix", dialogue=np.pad(short, ((0, 0), (0, bed.shape[1] - short.shape[1]))))
    assert report["target"] == -24.0 and report["measured_key"] == "integrated_lufs" and "15 %" in report["note"]
    assert abs(loudness.ebur128(out, RATE)["integrated_lufs"] - (-24.0)) <= 0.1
