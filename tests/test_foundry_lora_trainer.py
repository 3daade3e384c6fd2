"""Actor-LoRA trainer on tiny random Wan / Qwen-Image transformers (CPU): buckets + latent/text cache, loss goes
down on a fixed batch, resume is bit-exact, both saved layouts load back through the pack's LoRA loader."""
import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("peft")

from vibeboard.foundry import lora_dataset as D
from vibeboard.foundry import lora_trainer as T
from vibeboard.models import lora as L
from vibeboard.models import tiny


def _images(tmp_path, n=2):
    rng = np.random.default_rng(0)
    out = []
    for i, (w, h) in enumerate([(40, 32), (32, 48)][:n]):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(p)
        out.append(D.Sample(str(p), f"ana w{i} face"))
    return out


def _wan_cache(tmp_path):
    vae = tiny.build_vae()
    text = tiny.build_umt5()

    def enc_image(x):  # [1,3,H,W] → [16,1,h,w] (Wan VAE on a one-frame video)
        return vae.encode(x[:, :, None]).latent_dist.mode()[0]

    def enc_text(caption):
        ids = torch.tensor([[tiny.TINY_WORDS.index(w) if w in tiny.TINY_WORDS else 2 for w in caption.split()]])
        ids = torch.nn.functional.pad(ids, (0, 8 - ids.shape[1]))
        mask = (ids > 0).long()
        return text(ids, attention_mask=mask).last_hidden_state[0] * mask[0, :, None], mask[0]
    return D.LatentCache(str(tmp_path / "cache"), "tiny-wan", enc_image, enc_text)


def test_buckets_keep_the_area_and_pick_the_nearest_aspect():
    buckets = D.make_buckets(512)
    assert all(w * h <= 512 * 512 and w % 16 == 0 and h % 16 == 0 for w, h in buckets)
    assert D.pick_bucket(1920, 1080, buckets) in [(672, 384), (688, 384)]
    assert D.pick_bucket(1000, 1000, buckets) == (512, 512)


def test_cache_reads_back_instead_of_encoding_again(tmp_path):
    samples = _images(tmp_path)
    cache = _wan_cache(tmp_path)
    first = D.build_items(samples, cache, resolution=64)
    assert cache.misses == 4 and cache.hits == 0
    assert first[0]["bucket"] != first[1]["bucket"]  # landscape and portrait land in different buckets
    again = D.build_items(samples, _wan_cache(tmp_path), resolution=64)
    assert torch.equal(first[0]["latent"], again[0]["latent"])


def test_wan_loss_decreases_and_resume_is_bit_exact_and_both_formats_load(tmp_path):
    items = D.build_items(_images(tmp_path), _wan_cache(tmp_path), resolution=64)
    cfg = T.TrainConfig(family="wan", rank=4, alpha=4, learning_rate=5e-3, steps=6, save_every=100, seed=3)
    model = tiny.build_transformer("t2v")
    seen = []
    straight = T.train(model, items, cfg, str(tmp_path / "a"), on_step=lambda s, n, l: seen.append((s, n, l)))
    assert [s for s, _, _ in seen] == list(range(1, 7)) and all(np.isfinite(l) for _, _, l in seen)

    resumed_model = tiny.build_transformer("t2v")
    first = T.train(resumed_model, items, cfg, str(tmp_path / "b"), stop_after=3)
    assert first["step"] == 3
    fresh_model = tiny.build_transformer("t2v")  # a new process: nothing kept in memory
    second = T.train(fresh_model, items, cfg, str(tmp_path / "b"))
    assert second["step"] == 6 and second["losses"] == straight["losses"]
    for n in straight["names"]:
        assert torch.equal(dict(model.named_parameters())[n], dict(fresh_model.named_parameters())[n]), n

    # a fixed batch: more steps at the same settings lower the loss on fixed noise/σ
    probe = tiny.build_transformer("t2v")
    names = T.add_lora(probe, cfg)
    before = T.eval_loss(probe, cfg, items)
    T.train(probe, items, T.TrainConfig(**{**cfg.__dict__, "steps": 15, "learning_rate": 1e-2}), str(tmp_path / "c"), names=names)
    assert T.eval_loss(probe, cfg, items) < before * 0.9

    paths = T.export(model, straight["names"], cfg, str(tmp_path / "out"), "ana")
    x = torch.randn(1, 16, 1, 4, 4)
    emb = items[0]["embeds"][None]
    with torch.no_grad():
        want = T.predict(model, "wan", x, torch.tensor([0.5]), emb, None)
    for fmt in ("comfyui", "diffusers"):
        base = tiny.build_transformer("t2v")
        groups = L.read_lora(paths[fmt])
        if fmt == "comfyui":
            assert all(k.startswith("lora_unet_blocks_") for k in groups)  # Wan's original module names
            assert any("_self_attn_q" in k for k in groups) and any("_ffn_0" in k for k in groups)
        patch = L.LoraPatch(base)
        assert len(patch.add(groups, 1.0)) == len(straight["names"]) // 2
        with torch.no_grad():
            got = T.predict(base, "wan", x, torch.tensor([0.5]), emb, None)
        assert torch.allclose(got, want, atol=2e-3), fmt  # bf16 files


def test_resume_refuses_other_settings(tmp_path):
    items = D.build_items(_images(tmp_path, 1), _wan_cache(tmp_path), resolution=64)
    cfg = T.TrainConfig(family="wan", rank=2, alpha=2, steps=2, save_every=1)
    T.train(tiny.build_transformer("t2v"), items, cfg, str(tmp_path / "r"), stop_after=1)
    with pytest.raises(T.TrainerError, match="rank=2"):
        T.train(tiny.build_transformer("t2v"), items, T.TrainConfig(family="wan", rank=4, alpha=2, steps=2),
                str(tmp_path / "r"))


def test_qwen_image_transformer_trains_and_exports(tmp_path):
    from diffusers import QwenImageTransformer2DModel
    torch.manual_seed(0)
    model = QwenImageTransformer2DModel(patch_size=2, in_channels=64, out_channels=16, num_layers=1,
                                        attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                        axes_dims_rope=(4, 6, 6))
    items = [{"latent": torch.randn(16, 1, 4, 4), "embeds": torch.randn(6, 32), "mask": torch.ones(6).long(),
              "bucket": (32, 32), "caption": "ana"}]
    cfg = T.TrainConfig(family="qwen-image", rank=4, alpha=4, learning_rate=5e-3, steps=4, save_every=100)
    out = T.train(model, items, cfg, str(tmp_path / "q"))
    assert len(out["losses"]) == 4
    paths = T.export(model, out["names"], cfg, str(tmp_path / "out"), "ana_qwen")
    base = QwenImageTransformer2DModel(patch_size=2, in_channels=64, out_channels=16, num_layers=1,
                                       attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                       axes_dims_rope=(4, 6, 6))
    for fmt in ("comfyui", "diffusers"):
        assert L.check_fits(base, L.read_lora(paths[fmt]), strict=True) == len(out["names"]) // 2


def test_trainer_node_through_the_executor_lowers_the_loss_under_inference_mode(tmp_path):
    # The executor runs nodes under torch.inference_mode() like ComfyUI: the trainer must opt out, or it records no
    # graph ("element 0 of tensors does not require grad"). The trained file must lower the loss on fixed noise.
    import glob

    from safetensors.torch import load_file

    from vibeboard_runner.executor import Executor
    from vibeboard_runner.registry import NodeRegistry
    prompt = {"1": {"class_type": "VBSamplePortrait", "inputs": {"size": 64, "seed": 0}},
              "2": {"class_type": "VBActorCard", "inputs": {"db_path": "p.vbdb", "actor": "Ana", "character": "MARA",
                                                            "face_licence": "CC0", "face_front": ["1", 0]}},
              "3": {"class_type": "VBActorLoraTrain", "inputs": {
                  "actor": ["2", 0], "model": "tiny-random (test, no weights)", "steps": 10, "rank": 4,
                  "learning_rate": 1e-2, "resolution": 64, "trigger": "", "filename_prefix": "loras/ana"}}}
    ex = Executor(NodeRegistry.default(), output_dir=tmp_path / "out", input_dir=tmp_path / "in",
                  temp_dir=tmp_path / "t", models_dir=str(tmp_path / "models"))
    result = ex.execute(prompt)
    assert result.status == "success", result.error
    cache = str(tmp_path / "out" / "loras" / "ana_work" / "cache")
    (lat,), (txt,) = glob.glob(cache + "/lat_*.safetensors"), glob.glob(cache + "/txt_*.safetensors")
    text = load_file(txt)
    items = [{"latent": load_file(lat)["latent"], "embeds": text["embeds"], "mask": text["mask"]}]
    cfg = T.TrainConfig(family="wan")
    base = tiny.build_transformer("t2v")  # the node's tiny DiT (same seed); its LoRA starts as a no-op
    before = T.eval_loss(base, cfg, items)
    L.LoraPatch(base).add(L.read_lora(str(tmp_path / "out" / "loras" / "ana.safetensors")), 1.0)
    assert T.eval_loss(base, cfg, items) < before * 0.9


def test_a_base_model_loaded_under_inference_mode_still_trains(tmp_path):
    # Inside ComfyUI a loader node runs under inference mode: its weights are inference tensors, which autograd cannot
    # save for backward. train() gives the base normal tensors and makes the LoRA outside inference mode.
    items = D.build_items(_images(tmp_path, 1), _wan_cache(tmp_path), resolution=64)
    cfg = T.TrainConfig(family="wan", rank=2, alpha=2, learning_rate=1e-2, steps=2, save_every=100)
    with torch.inference_mode():
        model = tiny.build_transformer("t2v")
        out = T.train(model, items, cfg, str(tmp_path / "w"))
    assert len(out["losses"]) == 2 and all(np.isfinite(out["losses"]))
    ups = [p for n, p in model.named_parameters() if ".lora_B." in n]
    assert ups and any(float(p.abs().max()) > 0 for p in ups)  # lora_B starts at zero: it moved, so it trained
