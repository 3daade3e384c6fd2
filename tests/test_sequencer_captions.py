"""Captions from screenplay dialogue + TTS audio obey every caption rule and parse back to the same events from
SRT, WebVTT and TTML; rule breaks are reported."""
import pytest

pytest.importorskip("pysubs2")
pytest.importorskip("pycaption")
pytest.importorskip("silero_vad")

from sequencer_media import speech  # noqa: E402
from vibeboard.sequencer import captions  # noqa: E402

FPS = 24
# Dialogue of a scene as a screenplay gives it (the Fountain parser is Script Lab's; these are its lines).
SCENE = [
    "Where were you last night? I waited by the old pier until the fog came in and the lights went out one by one.",
    "I was working. You know that.",
    "Working. At two in the morning, with your phone switched off and your car parked outside the Harbour Hotel?",
]


@pytest.fixture(scope="module")
def dialogue(tmp_path_factory):
    wave = speech(" ".join(SCENE), tmp_path_factory.mktemp("tts") / "scene.wav")
    if wave is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    return wave


@pytest.fixture(scope="module")
def events(dialogue):
    return captions.from_dialogue(SCENE, dialogue, 48000, FPS)


def test_captions_from_dialogue_obey_every_rule(dialogue, events):
    assert captions.validate(events, FPS) == []
    for ev in events:
        assert len(ev.lines) <= 2 and all(len(line) <= 42 for line in ev.lines)
        assert 5 / 6 - 1e-3 <= ev.end - ev.start <= 7.0
        assert ev.chars / (ev.end - ev.start) <= 17.0
    for a, b in zip(events, events[1:]):
        assert b.start - a.end >= 2 / FPS - 1e-3  # 2 frames, times in whole ms
    words = " ".join(" ".join(ev.lines) for ev in events).split()
    assert words == " ".join(SCENE).split()  # every word, in order, none invented
    speech_end = dialogue.shape[1] / 48000
    assert events[0].start < 1.0 and events[-1].end <= speech_end + 1e-3


@pytest.mark.parametrize("fmt", ["srt", "vtt", "ttml"])
def test_caption_files_parse_back_to_the_same_events(events, fmt):
    back = captions.parse(captions.to_text(events, fmt), fmt)
    assert [(e.start, e.end, e.lines) for e in back] == [(e.start, e.end, e.lines) for e in events]


def test_tts_timestamps_time_the_lines_directly():
    events = captions.from_dialogue(["Hello there.", "General Kenobi."], tts_spans=[(1.0, 2.0), (2.05, 3.5)], fps=FPS)
    assert events[0].start == 1.0 and events[1].start == pytest.approx(2.042, abs=1e-3)
    assert (events[1].start - events[0].end) * FPS == pytest.approx(2.0, abs=0.05)  # gap closed to 2 frames


def test_validator_reports_each_broken_rule():
    bad = [captions.Event(0.0, 0.5, ["x" * 50, "two", "three"]), captions.Event(0.52, 9.0, ["fast"])]
    problems = " | ".join(captions.validate(bad, FPS))
    for expected in ("3 lines", "50 characters", "shorter than 5/6 s", "characters per second", "gap to the next",
                     "longer than 7 s"):
        assert expected in problems


def test_line_breaking_balances_and_never_orphans_a_word():
    chunks = captions.break_lines("A very long line without any punctuation that just keeps going on and on until "
                                  "the speaker finally runs out of breath and stops here")
    assert all(len(c) <= 2 and all(len(line) <= 42 for line in c) for c in chunks)
    assert all(len(" ".join(c).split()) > 2 for c in chunks)


def test_burn_in_draws_captions_only_while_they_show(tmp_path):
    from sequencer_media import write_clip
    from vibeboard.media import video as video_io
    from vibeboard.sequencer import conform, timeline as tl
    path = write_clip(tmp_path / "c.mp4", 48, width=160, height=96)
    cut = tl.new_timeline("burn", FPS, 160, 96)
    tl.video_track(cut).append(tl.make_clip("c", path, FPS, 0, 48, 48))
    events = captions.build_events(["Hello there."], [(0.5, 1.4)], FPS)
    plain, burnt = str(tmp_path / "plain.mp4"), str(tmp_path / "burnt.mp4")
    conform.render(cut, plain, crf=0, preset="ultrafast")
    conform.render(cut, burnt, crf=0, preset="ultrafast", captions=events)
    a = [f.astype(int) for _, f in video_io.iter_video_frames(plain)]
    b = [f.astype(int) for _, f in video_io.iter_video_frames(burnt)]
    changed = [t for t in range(48) if abs(a[t] - b[t]).max() > 60]
    first, last = round(events[0].start * FPS), round(events[0].end * FPS)
    assert changed == list(range(first, last))
    rows = [r for r in range(96) if abs(a[20][r] - b[20][r]).max() > 60]
    assert min(rows) > 96 // 2  # in the lower half of the picture
