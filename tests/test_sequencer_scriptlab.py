"""Script Lab's breakdown of a real screenplay gives the Sequencer its shot order (runs where Script Lab is
installed, i.e. once both modules are merged): one clip per shot, in script order."""
import glob
import os

import pytest

pytest.importorskip("opentimelineio")
pipeline = pytest.importorskip("vibeboard.scriptlab.pipeline")
assetdb = pytest.importorskip("vibeboard.assetdb")

from sequencer_media import write_clip  # noqa: E402
from vibeboard.sequencer import assembly  # noqa: E402


def test_scriptlab_shot_list_assembles_in_script_order(tmp_path):
    samples = sorted(glob.glob(os.path.join(os.path.dirname(pipeline.__file__), "samples", "*.fountain")))
    if not samples:
        pytest.skip("no sample screenplay shipped with Script Lab")
    db_path = str(tmp_path / "script.sqlite")
    pipeline.run_breakdown(samples[0], db_path)
    with assetdb.AssetDB(db_path) as db:
        order = assembly.shot_order_from_scriptlab(db, None, fps=24, width=64, height=48)
    shots = [s["shot"] for s in order["shots"]]
    assert shots and len(set(shots)) == len(shots)
    clip = write_clip(tmp_path / "take.mp4", 30)
    cut = assembly.assemble(order, lambda shot: {"path": clip, "frames": 30, "recipe": {"seed": 1}})
    assert [c.name for c in cut.find_clips()] == shots
    assert [c.metadata["vibeboard"]["shot"] for c in cut.find_clips()] == shots
