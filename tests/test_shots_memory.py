"""StoryMem memory bank (disk round trip, policy, dedup) and keyframe selection on a video with known cuts."""
import json
import os

import torch

from vibeboard.shots import keyframes, storymem, tiny_models
from vibeboard.shots.memory_bank import MemoryEntry, StoryMemoryBank


def _entry(shot, frame, seed, with_latent=False):
    g = torch.Generator().manual_seed(seed)
    e = torch.randn(8, generator=g)
    return MemoryEntry(image=torch.rand(12, 16, 3, generator=g), shot=shot, frame=frame, prompt=f"s{shot}",
                       embedding=e / e.norm(), latent=torch.randn(16, 2, 2, generator=g) if with_latent else None,
                       latent_size=(16, 16) if with_latent else None, score=float(seed))


def test_bank_disk_round_trip_is_exact(tmp_path):
    bank = StoryMemoryBank(max_size=5, keep_first=2, story_id="film-1", next_shot=3)
    for i in range(4):
        assert bank.add(_entry(1 + i // 2, i, seed=i, with_latent=i % 2 == 0))
    folder = str(tmp_path / "story")
    bank.save(folder)
    loaded = StoryMemoryBank.load(folder)
    assert (loaded.max_size, loaded.keep_first, loaded.story_id, loaded.next_shot) == (5, 2, "film-1", 3)
    assert len(loaded) == 4
    for a, b in zip(bank.entries, loaded.entries):
        assert torch.equal(a.image, b.image) and a.image.dtype == torch.uint8
        assert torch.equal(a.embedding, b.embedding)
        assert (a.latent is None) == (b.latent is None)
        if a.latent is not None:
            assert torch.equal(a.latent, b.latent) and b.latent_size == (16, 16)
        assert (a.shot, a.frame, a.prompt, a.score) == (b.shot, b.frame, b.prompt, b.score)
    # a second save replaces the tensor file atomically and removes the old one
    loaded.add(_entry(3, 0, seed=10))
    loaded.save(folder)
    files = sorted(os.listdir(folder))
    assert files.count("manifest.json") == 1 and len([f for f in files if f.endswith(".safetensors")]) == 1
    assert not [f for f in files if f.startswith(".")]
    manifest = json.load(open(os.path.join(folder, "manifest.json")))
    assert manifest["format"] == "vibeboard.story_memory" and len(manifest["entries"]) == 5
    assert len(StoryMemoryBank.load(folder)) == 5


def test_bank_policy_keeps_first_and_most_recent():
    bank = StoryMemoryBank(max_size=4, keep_first=2)
    for i in range(7):
        bank.add(_entry(i, 0, seed=100 + i), dedup=False)
    assert [e.shot for e in bank.entries] == [0, 1, 5, 6]


def test_bank_drops_near_duplicates():
    bank = StoryMemoryBank(max_size=8)
    a = _entry(1, 0, seed=1)
    assert bank.add(a)
    dup = _entry(2, 0, seed=2)
    dup.embedding = a.embedding.clone()
    assert not bank.add(dup) and len(bank) == 1


def _cut_video(n_per=6, seed=0):
    """Four shots-within-a-shot: 4 distinct random textures, each held for n_per frames with slight jitter."""
    g = torch.Generator().manual_seed(seed)
    frames = []
    for _ in range(4):
        base = torch.rand(24, 32, 3, generator=g)
        for _ in range(n_per):
            frames.append((base + 0.01 * torch.randn(24, 32, 3, generator=g)).clamp(0, 1))
    return torch.stack(frames)


def _tiny_clip_folder(tmp_path):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
    cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8, projection_dim=16)
    torch.manual_seed(0)
    folder = str(tmp_path / "clip")
    CLIPVisionModelWithProjection(cfg).save_pretrained(folder, safe_serialization=True)
    return folder


def test_keyframes_pick_the_cuts_with_clip(tmp_path):
    embed = keyframes.ClipImageEmbedder(_tiny_clip_folder(tmp_path))
    video = _cut_video()
    e = embed(video)
    assert e.shape == (24, 16) and torch.allclose(e.norm(dim=-1), torch.ones(24), atol=1e-5)
    # A random-weight CLIP squeezes all similarities towards 1 (different textures ~0.98, same ~0.9999), so the
    # threshold is scaled for it; with real CLIP weights the StoryMem default 0.9 plays the same role.
    res = keyframes.select_keyframes(video, embed, threshold=0.995, max_keyframes=8)
    assert res.indices == [0, 6, 12, 18]


def test_keyframes_threshold_lowering_and_quality_gate():
    video = _cut_video()
    ids = torch.arange(24) // 6
    onehot = torch.nn.functional.one_hot(ids, 4).float()

    def embed(frames):  # identity "embedding" keyed on the segment, made slightly graded between segments
        idx = [int(torch.argmin(((video - f).abs()).flatten(1).sum(1))) for f in frames]
        e = onehot[idx] + 0.2 * torch.linspace(0, 1, 4)[None]
        return e

    res = keyframes.select_keyframes(video, embed, threshold=0.9, max_keyframes=8)
    assert res.indices == [0, 6, 12, 18]
    capped = keyframes.select_keyframes(video, embed, threshold=0.9, max_keyframes=3, threshold_step=0.05)
    assert len(capped.indices) <= 3 and capped.threshold < 0.9
    scores = torch.tensor([1.0] * 7 + [5.0] * 17)  # frames 0..6 fail the gate
    gated = keyframes.select_keyframes(video, embed, threshold=0.9, max_keyframes=8,
                                       scorer=lambda f: scores[:f.shape[0]], min_score=3.0)
    assert gated.indices == [7, 12, 18]


def test_update_memory_adds_shot_keyframes_and_encodes_one_latent_frame_each(tmp_path):
    video = _cut_video()
    embed = keyframes.ClipImageEmbedder(_tiny_clip_folder(tmp_path))
    bank = StoryMemoryBank(max_size=8, dedup_threshold=0.995)  # scaled for the random CLIP, as above
    bank2, res, kept = keyframes.update_memory(bank, video, embed, threshold=0.995, max_keyframes=8)
    assert len(bank) == 0 and kept == [0, 6, 12, 18] and bank2.next_shot == 2
    # the same shot again: every candidate is a near-duplicate of the bank
    bank3, _, kept3 = keyframes.update_memory(bank2, video, embed, threshold=0.995, max_keyframes=8)
    assert kept3 == [] and len(bank3) == 4
    from vibeboard.wan.handle import WanHandle
    vae = WanHandle.from_modules(vae=tiny_models.wan_vae(), variant="i2v")
    lat = storymem.encode_memory(vae, bank2, 16, 32)
    assert lat.shape == (1, 16, 4, 2, 4)
    assert bank2.entries[0].latent_size == (16, 32)
    again = storymem.encode_memory(vae, bank2, 16, 32)
    assert torch.equal(lat, again)
