"""workflows/character_foundry(.api).json: the UI file converts to its API twin (weights-needing nodes muted) and
the twin runs headless with no weights: actor card in the asset DB → tiny actor LoRA in both formats on the card."""
import os

import pytest

pytest.importorskip("peft")

from workflow_helpers import muted_types, run_saved_workflow  # noqa: E402


def test_character_foundry_workflow_runs_headless(tmp_path):
    _, ui = run_saved_workflow("character_foundry", tmp_path)
    assert muted_types(ui) == {"VBFlashPortrait", "VBElevenLabsSpeech", "VBSaveVideo", "VBWanModelLoader",
                               "VBWanTextEncode", "VBTalkingHead"}  # performance from video and from audio: need weights
    from vibeboard.foundry.actor_card import ActorCards
    card = ActorCards(str(tmp_path / "out" / "script_lab" / "project.vbdb")).card("Ana Reyes")
    assert card["voice"]["seed"] == 7 and card["faces"]["face_front"][0]["licence"] == "generated (CC0)"
    assert len(card["loras"]) == 1 and os.path.isfile(card["loras"][0]["path"])
    assert card["loras"][0]["licences"] == ["generated (CC0)"]


def test_flashportrait_node_names_the_missing_file_before_loading_anything(tmp_path, monkeypatch):
    import torch
    from vibeboard.common import runtime
    from vibeboard.foundry.nodes import VBFlashPortrait
    folder = tmp_path / "models" / "checkpoints" / "FlashPortrait"
    folder.mkdir(parents=True)
    for name in ("transformer.pt", "portrait_encoder.pt", "face_det.onnx", "face_landmark.onnx"):
        (folder / name).write_bytes(b"x")
    monkeypatch.setitem(runtime._dirs, "models", str(tmp_path / "models"))
    with pytest.raises(runtime.NodeInputError) as err:
        VBFlashPortrait().perform("checkpoints/FlashPortrait", torch.rand(1, 32, 32, 3), "d.mp4", "p", 24.0, 2,
                                  5.0, 4.0, 21, 8, "full", 0)
    assert str(err.value) == (f"FlashPortrait (VibeBoard): input 'folder': FlashPortrait file missing: expected "
                              f"{folder / 'pd_fpg.pth'} (vibeboard models pull flashportrait)")
