"""workflows/asset_bin(.api).json: the UI file converts to the API twin and runs headless with no weights."""
import json

import pytest

pytest.importorskip("trimesh")

from workflow_helpers import muted_types, run_saved_workflow  # noqa: E402


def test_asset_bin_runs_headless_without_weights(tmp_path):
    import trimesh

    res, ui = run_saved_workflow("asset_bin", tmp_path)
    assert muted_types(ui) == {"VBSamLoader"}  # needs weights: muted
    glb = [f for f in res.output_files() if f["filename"].endswith(".glb")]
    assert len(glb) == 1
    ply = [f for f in res.output_files() if f["filename"].endswith(".ply")]
    cloud = trimesh.load(ply[0]["path"])
    assert len(cloud.vertices) == 256 * 192 and abs(float(cloud.vertices[:, 1].min())) < 0.05  # floor at y = 0
    scene = trimesh.load(glb[0]["path"], force="scene")
    assert sorted(scene.graph.nodes_geometry) == ["cabinet", "crate", "stool"]
    import sqlite3

    import numpy as np
    from PIL import Image

    root = tmp_path / "out" / "vibeboard" / "assets"
    row = sqlite3.connect(str(root / "assets.sqlite")).execute(
        "SELECT glb, thumbnails, licence_class, element_ref FROM assets").fetchone()
    assert row[0] == glb[0]["filename"] and row[2] == "open" and row[3] is None
    thumb = np.asarray(Image.open(root / json.loads(row[1])[0]))
    assert thumb.shape == (256, 256, 3) and thumb.std() > 10  # the objects are drawn, not a blank frame


def test_deconstruct_node_errors_name_the_input(tmp_path):
    import torch

    from vibeboard.assetbin.nodes import VBDeconstructScene, VBSampleRoom
    from vibeboard.common import runtime
    from vibeboard.common.runtime import NodeInputError

    runtime.set_host_dirs(output=str(tmp_path / "o"), input=str(tmp_path / "i"), temp=str(tmp_path / "t"))
    image, depth, fov, _ = VBSampleRoom().make(128, 96, 70.0, 0)
    args = dict(fov_deg=fov, scene_name="r", object_names="", room_prompt="empty", inpaint_steps=1, seed=0)
    with pytest.raises(NodeInputError, match="input 'object_prompt'"):
        VBDeconstructScene().run(image, depth, object_prompt="Show the {thing}", **args)
    with pytest.raises(NodeInputError, match="input 'depth'.*but the image"):
        VBDeconstructScene().run(image, depth[:, :50], object_prompt="{name}", **args)
    with pytest.raises(NodeInputError, match="input 'depth'.*positive"):
        VBDeconstructScene().run(image, torch.zeros_like(depth), object_prompt="{name}", **args)
