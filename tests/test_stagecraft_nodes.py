"""Stagecraft nodes: bad input is a NodeInputError naming the node and input; paths from documents stay
inside the input folder."""
import json
import os

import pytest
import torch

from vibeboard.common import runtime
from vibeboard.common.runtime import NodeInputError
from vibeboard.stagecraft import nodes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = json.load(open(os.path.join(ROOT, "workflows", "inputs", "stagecraft_blocking.json")))


@pytest.fixture
def dirs(tmp_path):
    runtime.set_host_dirs(output=str(tmp_path / "out"), input=str(tmp_path / "in"), temp=str(tmp_path / "t"))
    os.makedirs(tmp_path / "in", exist_ok=True)
    return tmp_path


def load(doc):
    return nodes.VBBlockingLoad().load(json.dumps(doc))[0]


def test_blocking_load_errors_name_the_input(dirs):
    with pytest.raises(NodeInputError, match=r"Blocking Load \(VibeBoard\): input 'blocking'.*non-empty"):
        nodes.VBBlockingLoad().load(json.dumps({**SAMPLE, "actors": []}))
    with pytest.raises(NodeInputError, match="file not found"):
        nodes.VBBlockingLoad().load("missing.json")
    with pytest.raises(NodeInputError, match=r"\.\."):
        nodes.VBBlockingLoad().load("sample:../../README.md")
    doc, summary = nodes.VBBlockingLoad().load("sample:stagecraft_blocking.json")
    assert "shots: 1 (A, 24 f)" in summary


def test_a_set_glb_named_in_the_document_stays_in_the_input_folder(dirs):
    doc = load({**SAMPLE, "set": {**SAMPLE["set"], "glb": "../../etc/passwd"}})
    with pytest.raises(NodeInputError, match="set.glb"):
        nodes.VBPrevizAnimatic().run(doc, 32, 18, "x")


def test_unreal_node_refuses_public_hosts_and_bad_maps(dirs):
    doc = load(SAMPLE)
    with pytest.raises(NodeInputError, match="actor_paths.*JSON"):
        nodes.VBUnrealApplyBeat().run(doc, 0, "127.0.0.1", 30010, False, "{nope", "{}", "{}")
    with pytest.raises(NodeInputError, match="not in the blocking"):
        nodes.VBUnrealApplyBeat().run(doc, 0, "127.0.0.1", 30010, False, '{"carol": "/Game/X"}', "{}", "{}")
    with pytest.raises(NodeInputError, match="public"):
        nodes.VBUnrealApplyBeat().run(doc, 0, "8.8.8.8", 30010, True, "{}", "{}", "{}")


def test_nitrogen_node_is_loopback_only(dirs):
    with pytest.raises(NodeInputError, match="loopback"):
        nodes.VBNitroGenActions().run(torch.zeros(1, 8, 8, 3), "10.1.2.3", 5555, "x" * 20, False)
    with pytest.raises(NodeInputError, match="NitroGen server"):
        nodes.VBNitroGenActions().run(torch.zeros(1, 8, 8, 3), "127.0.0.1", 9, "x" * 20, False)


def test_customx_conditioning_hides_the_character_and_masks_its_anchor(dirs):
    doc = load(SAMPLE)
    frames, masks = nodes.VBCustomXConditioning().run(doc, "2", "alice")
    assert frames.shape == (12, 180, 320, 3) and masks.shape == (12, 180, 320)
    assert masks.sum() > 0
    with pytest.raises(NodeInputError, match="character"):
        nodes.VBCustomXConditioning().run(doc, "2", "carol")
