"""Tiny real media for the Sequencer/Dailies tests, written with PyAV (nothing stored in the repo)."""
import shutil
import subprocess

import numpy as np

from vibeboard.media import audio as audio_io
from vibeboard.media import video as video_io
from vibeboard.sequencer.test_media import coded_frames, tone  # noqa: F401  (re-exported for the tests)


def write_clip(path, frames=48, fps=24, clip_id=0, audio=None, width=64, height=48, **kw):
    video_io.write_video(str(path), coded_frames(frames, width, height, clip_id=clip_id, **kw), fps, crf=0,
                         preset="ultrafast", audio=audio)
    return str(path)


def source_frames(paths):
    """{(clip index, frame number): frame} of the given files, decoded the same way as the conform output."""
    table = {}
    for clip, path in enumerate(paths):
        for number, (_, rgb) in enumerate(video_io.iter_video_frames(str(path))):
            table[(clip, number)] = rgb.astype(np.float32)
    return table


def closest_source(frame, table):
    """The (clip, frame number) whose picture is nearest to `frame` (mean absolute difference)."""
    frame = frame.astype(np.float32)
    return min(table, key=lambda key: float(np.abs(table[key] - frame).mean()))


def speech(text, path, rate=48000):
    """espeak-ng speech as stereo float32 [2, N] at `rate` (None when espeak-ng is not installed)."""
    if shutil.which("espeak-ng") is None:
        return None
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(path), text], check=True, capture_output=True)
    wave, source_rate = audio_io.decode_audio(str(path))
    from vibeboard.sequencer.audio_mix import resample, to_stereo
    return to_stereo(resample(wave, source_rate, rate))
