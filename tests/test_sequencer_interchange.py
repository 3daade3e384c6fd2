"""The cut as OTIO: a 3-clip timeline with a 12-frame dissolve survives .otio → .otioz → reopen; FCP7 XML has a
filled <format> and the same cut points; the EDL refuses a dissolve without handles and starts at 01:00:00:00."""
import os
import xml.etree.ElementTree as ET
import zipfile

import pytest

otio = pytest.importorskip("opentimelineio")

from sequencer_media import write_clip  # noqa: E402
from vibeboard.sequencer import interchange, timeline as tl  # noqa: E402

FPS = 24


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    return [write_clip(folder / f"shot{i}.mp4", 48, clip_id=i) for i in range(3)]


def three_clip_cut(paths, source_in=6, dissolve=12):
    cut = tl.new_timeline("Ep1", FPS, 64, 48, start_frame=86400)
    video = tl.video_track(cut)
    for i, path in enumerate(paths):
        recipe = {"job_id": f"job{i}", "workflow": "shot_studio", "seed": 100 + i, "model_ids": ["wan2.1-t2v-1.3b"],
                  "prompt": f"shot {i}", "parent": None}
        tl.append_clip(video, tl.make_clip(f"sh{i + 1:02d}0", path, FPS, source_in, 24, 48, recipe),
                       dissolve if i == 1 else 0)
    tl.add_marker(cut.tracks, "music in", 30, 1, FPS, "GREEN")
    return cut


def test_otio_to_otioz_and_back_keeps_structure_metadata_and_media(clips, tmp_path):
    cut = three_clip_cut(clips)
    first = str(tmp_path / "cut.otio")
    interchange.write(cut, first, "otio")
    reopened = interchange.read(first)
    bundle = str(tmp_path / "cut.otioz")
    interchange.write(reopened, bundle, "otioz")
    with zipfile.ZipFile(bundle) as archive:
        assert sorted(n for n in archive.namelist() if n.startswith("media/")) == [
            "media/shot0.mp4", "media/shot1.mp4", "media/shot2.mp4"]
    final = interchange.read(bundle, extract_to=str(tmp_path / "extracted"))
    before, after = tl.summary(cut), tl.summary(final)
    assert after == before
    assert after["tracks"][0]["transitions"] == [{"after_clip": 0, "in": 6, "out": 6}]
    assert [c["recipe"]["seed"] for c in after["tracks"][0]["clips"]] == [100, 101, 102]
    for clip in final.find_clips():  # the bundle's media, extracted
        assert os.path.isfile(tl.media_path(clip)) and str(tmp_path / "extracted") in tl.media_path(clip)


def test_fcp7_xml_has_a_format_and_the_same_cut_points(clips, tmp_path):
    cut = three_clip_cut(clips)
    path = str(tmp_path / "cut.xml")
    interchange.write(cut, path, "fcp7_xml")
    root = ET.parse(path).getroot()
    chars = root.find(".//sequence/media/video/format/samplecharacteristics")
    assert chars is not None
    assert (chars.findtext("width"), chars.findtext("height"), chars.findtext("rate/timebase")) == ("64", "48", "24")
    back = interchange.read(path)
    cuts = [(c.name, c.record_start, c.duration) for c in tl.cuts(tl.video_track(back))]
    assert cuts == [(c.name, c.record_start, c.duration) for c in tl.cuts(tl.video_track(cut))]
    assert [(int(t.in_offset.value), int(t.out_offset.value)) for _, t in tl.transitions(tl.video_track(back))] \
        == [(6, 6)]


def test_edl_starts_at_one_hour_and_carries_the_dissolve(clips, tmp_path):
    pycmx = pytest.importorskip("pycmx")
    path = str(tmp_path / "cut.edl")
    interchange.write(three_clip_cut(clips), path, "edl")
    with open(path) as handle:
        edl = pycmx.parse_cmx3600(handle)
    edits = [edit for event in edl.events for edit in event.edits]
    assert edits[0].record_in == "01:00:00:00"
    assert edits[-1].record_out == "01:00:03:00"  # 72 frames at 24 fps
    dissolves = [edit for edit in edits if edit.transition.kind == pycmx.Transition.Dissolve]
    assert [d.transition.effect_duration for d in dissolves] == [12]
    back = interchange.read(path)  # OTIO's own reader takes the standard columns too
    assert [c.name for c in tl.cuts(tl.video_track(back))][-1] == "sh030"


def test_edl_refuses_a_dissolve_without_handles_and_names_the_clips(clips, tmp_path):
    cut = three_clip_cut(clips, source_in=0)  # clip 2 starts at media frame 0: no head handle
    path = str(tmp_path / "cut.edl")
    with pytest.raises(interchange.InterchangeError) as err:
        interchange.write(cut, path, "edl")
    message = str(err.value)
    assert "EDL export refused" in message and "handle frames before clip 'sh020'" in message
    assert not os.path.exists(path)


def test_fcpxml_writes_the_cuts_and_the_limits_are_documented(clips, tmp_path):
    path = str(tmp_path / "cut.fcpxml")
    interchange.write(three_clip_cut(clips), path, "fcpxml")
    root = ET.parse(path).getroot()
    assert [c.get("name") for c in root.iter("clip")] == ["sh010", "sh020", "sh030"]
    assert set(interchange.ADAPTER_LIMITS) == set(interchange.FORMATS)
    docs = open(os.path.join(os.path.dirname(__file__), "..", "docs", "sequencer.md")).read()
    for fmt in interchange.FORMATS:
        assert f"`{fmt}`" in docs


def test_writing_never_overwrites(clips, tmp_path):
    path = tmp_path / "cut.otio"
    path.write_text("keep me")
    with pytest.raises(interchange.InterchangeError, match="will not overwrite"):
        interchange.write(three_clip_cut(clips), str(path), "otio")
    assert path.read_text() == "keep me"
