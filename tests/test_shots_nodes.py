"""Shot Studio node classes called directly: input errors name node and input, toggles, disk round trips."""
import json

import numpy as np
import pytest
import torch

from vibeboard.common import runtime
from vibeboard.shots import nodes, spatia
from vibeboard.shots.memory_bank import StoryMemoryBank

N = nodes.NODE_CLASS_MAPPINGS


@pytest.fixture
def dirs(tmp_path):
    saved = dict(runtime._dirs)
    runtime.set_host_dirs(output=str(tmp_path / "out"), input=str(tmp_path / "in"))
    (tmp_path / "in").mkdir()
    yield tmp_path
    runtime._dirs.clear()
    runtime._dirs.update(saved)


def test_every_node_declares_the_v1_contract():
    for name, cls in N.items():
        assert name.startswith("VB") and cls.CATEGORY == "VibeBoard/Shots" and cls.DESCRIPTION
        spec = cls.INPUT_TYPES()
        for section in ("required", "optional"):
            for inp, s in spec.get(section, {}).items():
                assert s[1].get("tooltip"), (name, inp)
        assert len(cls.RETURN_TYPES) == len(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES))
        assert name in nodes.NODE_DISPLAY_NAME_MAPPINGS
    assert "no public" in N["VBMontageControl"].DESCRIPTION and "no public" in N["VBKeyframeMontage"].DESCRIPTION


def test_boxes_load_inline_file_and_errors(dirs):
    node = N["VBBoxesLoad"]()
    boxes, count = node.load('[{"label": "a", "prompt": "p", "box": [0, 0, 0.5, 0.5]}]')
    assert count == 1 and boxes.boxes[0].prompt == "p"
    (dirs / "in" / "b.json").write_text(json.dumps({"shots": {"3": [{"box": [0, 0, 1, 1]}]}}))
    assert node.load("b.json", "3")[1] == 1
    with pytest.raises(runtime.NodeInputError, match="Boxes Load.*blocking"):
        node.load("missing.json")
    with pytest.raises(runtime.NodeInputError, match="Boxes Load.*blocking"):
        node.load('{"shots": {"1": [{"label": "x"}]}}')
    mask, = N["VBBoxesToMask"]().mask(boxes, 32, 16, 5)
    assert mask.shape == (5, 16, 32) and mask[:, :8, :16].eq(1).all() and mask[:, 8:].eq(0).all()
    out = N["VBBoxesSave"]().save(boxes, "vb/blocking")
    assert out["ui"]["files"][0]["filename"].endswith(".json")


def test_memory_load_save_and_folder_errors(dirs):
    load = N["VBStoryMemoryLoad"]()
    refs = torch.rand(2, 16, 16, 3)
    bank, images, count = load.load("story/mem", 8, 3, True, reference_images=refs)
    assert count == 2 and images.shape == (2, 16, 16, 3) and bank.entries[0].source == "reference"
    N["VBStoryMemorySave"]().save(bank)
    again = StoryMemoryBank.load(str(dirs / "out" / "story" / "mem"))
    assert len(again) == 2 and torch.equal(again.entries[1].image, bank.entries[1].image)
    with pytest.raises(runtime.NodeInputError, match="Story Memory Load.*memory_dir"):
        load.load("../../elsewhere", 8, 3, True)
    with pytest.raises(runtime.NodeInputError, match="Story Memory Load.*memory_dir"):
        load.load("story/none", 8, 3, False)


def test_montage_control_node_and_frame_errors():
    node = N["VBMontageControl"]()
    imgs = torch.rand(2, 16, 16, 3)
    control, mask = node.build(imgs, "0, 8", 16, 16, 9)
    assert control.shape == (9, 16, 16, 3) and mask[0].eq(0).all() and mask[5:9].eq(0).all() and mask[1].eq(1).all()
    with pytest.raises(runtime.NodeInputError, match="frames"):
        node.build(imgs, "0", 16, 16, 9)
    with pytest.raises(runtime.NodeInputError, match="frames"):
        node.build(imgs, "0, 50", 16, 16, 9)


def test_location_nodes_toggle_and_render(dirs):
    from vibeboard.camera import CameraPath, intrinsics_from_fov
    path = CameraPath(np.repeat(np.eye(4)[None], 3, 0), intrinsics_from_fov(32, 16, 60.0), 32, 16)
    loc, n = N["VBLocationMemoryLoad"]().load("sets/a", 0.0, True)
    assert n == 0
    images = torch.rand(3, 16, 32, 3)
    depth = torch.full((1, 16, 32, 3), 0.5)
    loc2, n2 = N["VBLocationMemoryUpdate"]().update(loc, images, depth, path, "inverse", 1.0, 1, 1, True)
    assert n2 == 3 * 16 * 32 and len(loc.cloud) == 0          # the input memory is not mutated
    assert (dirs / "out" / "sets" / "a" / "point_cloud.ply").is_file()
    render = N["VBLocationRender"]()
    control, mask, refs, vis = render.render(loc2, path, True)
    assert mask.sum() == 0 and refs.shape[0] == 2 and torch.allclose(control[0], (images[2] * 255).round() / 255,
                                                                          atol=1e-6)
    control, mask, refs, vis = render.render(loc2, path, False)
    assert mask.eq(1).all() and control.eq(0.5).all() and vis.sum() == 0
    assert len(spatia.load_ply(str(dirs / "out" / "sets" / "a" / "point_cloud.ply"))) == n2
