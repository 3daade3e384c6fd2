"""Actor cards in the project's asset DB: face refs, voice, LoRAs, licences, script days from Script Lab,
turnarounds/wardrobe generated with the pack's (tiny) Qwen-Image-Edit and stored with inherited licences."""
import numpy as np
import pytest
from PIL import Image

from vibeboard.assetdb import AssetDB
from vibeboard.foundry.actor_card import ActorCardError, ActorCards, generate_views
from vibeboard.scriptlab import pipeline


def _png(path, seed=0, size=32):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)
    return str(path)


def _project(tmp_path):
    script = tmp_path / "script.fountain"
    script.write_text(open(pipeline.sample_path()).read())
    pipeline.run_breakdown(str(script), str(tmp_path / "p.vbdb"))
    return AssetDB(str(tmp_path / "p.vbdb"))


def test_card_holds_faces_voice_loras_and_the_licence_of_every_input(tmp_path):
    cards = ActorCards(_project(tmp_path))
    cards.create("Ana Reyes", character="MARA")
    front = cards.add_image("Ana Reyes", "face_front", _png(tmp_path / "f.png"), "talent release #12", caption="ana")
    cards.add_image("Ana Reyes", "face_profile", _png(tmp_path / "p.png", 1), "own photo")
    with pytest.raises(ActorCardError, match="licence is required"):
        cards.add_image("Ana Reyes", "face_three_quarter", _png(tmp_path / "q.png", 2), "  ")
    with pytest.raises(ActorCardError, match="script_day"):
        cards.add_image("Ana Reyes", "wardrobe", _png(tmp_path / "w.png", 3), "own photo")
    cards.set_voice("Ana Reyes", "elevenlabs", "vid_123", "ElevenLabs voice library (commercial)",
                    settings={"stability": 0.4}, seed=7)
    lora = cards.add_lora("Ana Reyes", "wan2.1-t2v-1.3b", str(tmp_path / "ana.safetensors"), "comfyui", 16, 500,
                          [front["id"]], trigger="ana_reyes")
    assert lora["licences"] == ["talent release #12"]
    card = cards.card("Ana Reyes")
    assert card["voice"]["voice_id"] == "vid_123" and card["voice"]["settings"] == {"stability": 0.4}
    assert card["voice"]["seed"] == 7
    assert [i["id"] for i in card["faces"]["face_front"]] == [front["id"]]
    assert len(front["sha256"]) == 64
    assert {x["licence"] for x in card["licences"]} == {"talent release #12", "own photo",
                                                         "ElevenLabs voice library (commercial)"}
    with pytest.raises(ActorCardError, match="no actor card"):
        cards.card("Nobody")


def test_script_days_come_from_the_breakdown(tmp_path):
    db = _project(tmp_path)
    cards = ActorCards(db)
    cards.create("Ana Reyes", character="MARA")
    days = cards.script_days("Ana Reyes")
    mara = next(c for c in db.characters() if c["name"] == "MARA")
    assert sorted(n for d in days for n in d["scenes"]) == sorted(mara["scenes"])
    assert all(not d["has_image"] for d in days)


def test_turnaround_and_wardrobe_generated_with_qwen_edit_inherit_licences(tmp_path):
    from qwen_helpers import write_tiny_qwen_edit_folder
    import torch
    from vibeboard.vfx import qwen_edit

    folder = tmp_path / "qwen"
    write_tiny_qwen_edit_folder(folder)
    pipe = qwen_edit.load_pipeline(str(folder), dtype=torch.float32)
    cards = ActorCards(str(tmp_path / "own.vbdb"))  # no Script Lab import: the card still works on its own
    cards.create("Ana")
    cards.add_image("Ana", "face_front", _png(tmp_path / "f.png", size=64), "own photo")
    made = generate_views(cards, "Ana", pipe, str(tmp_path / "gen"), views=(),
                          script_days=[{"script_day": 2, "wardrobe": ["yellow raincoat"]}], steps=2,
                          megapixels=0.004)  # 64×64 output keeps the tiny model fast
    assert [m["kind"] for m in made] == ["wardrobe"]
    assert made[0]["script_day"] == 2 and "yellow raincoat" in made[0]["recipe"]["instruction"]
    assert all(m["licence"].startswith("own photo; generated with Qwen-Image-Edit") for m in made)
    assert Image.open(made[0]["path"]).size[0] > 0
    assert list(cards.card("Ana")["wardrobe"]) == [2]
