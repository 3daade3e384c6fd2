"""Marigold intrinsics (diffusers) from a tiny random pipeline saved in the published diffusers layout."""
import json
import os

import pytest
import torch

from vibeboard.assetbin.marigold_maps import estimate, load_pipeline, split_targets

APPEARANCE = {  # as model_index.json of prs-eth/marigold-iid-appearance-v1-1 describes its targets
    "target_names": ["albedo", "material"],
    "albedo": {"prediction_space": "srgb"},
    "material": {"prediction_space": "stack", "sub_target_names": ["roughness", "metallicity", None]},
    "roughness": {"prediction_space": "linear", "up_to_scale": False},
    "metallicity": {"prediction_space": "linear", "up_to_scale": False},
}


def write_clip_tokenizer(folder):
    """A byte-level BPE vocabulary with no merges: enough for the empty prompt Marigold encodes."""
    # GPT-2's byte → unicode table (CLIP's BPE alphabet)
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    cs, extra = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + extra)
            extra += 1
    chars = [chr(c) for c in cs]
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(vocab) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    os.makedirs(folder, exist_ok=True)
    json.dump(vocab, open(os.path.join(folder, "vocab.json"), "w"))
    open(os.path.join(folder, "merges.txt"), "w").write("#version: 0.2\n")
    from transformers import CLIPTokenizer
    CLIPTokenizer(os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt"),
                  model_max_length=77).save_pretrained(folder)
    return len(vocab)


def save_tiny_marigold(folder):
    from diffusers import AutoencoderKL, DDIMScheduler, MarigoldIntrinsicsPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    n_vocab = write_clip_tokenizer(os.path.join(folder, "tokenizer"))
    vae = AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4,
                        layers_per_block=1)
    unet = UNet2DConditionModel(sample_size=8, in_channels=12, out_channels=8,  # image + 2 target latents layers_per_block=1,
                                block_out_channels=(8, 16), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16,
                                attention_head_dim=4, norm_num_groups=4)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=n_vocab, hidden_size=16, intermediate_size=32,
                                        num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=77))
    pipe = MarigoldIntrinsicsPipeline(unet=unet, vae=vae, scheduler=DDIMScheduler(prediction_type="v_prediction"),
                                      text_encoder=text, tokenizer=CLIPTokenizer.from_pretrained(
                                          os.path.join(folder, "tokenizer")),
                                      prediction_type="intrinsics", target_properties=APPEARANCE,
                                      default_denoising_steps=1, default_processing_resolution=32)
    pipe.save_pretrained(folder, safe_serialization=True)


def test_tiny_marigold_maps_become_the_glb_materials(tmp_path):
    pytest.importorskip("trimesh")
    from vibeboard.assetbin import pbr, scene_glb
    from vibeboard.assetbin.deconstruct import Settings, deconstruct
    from vibeboard.assetbin.licences import most_restrictive
    from vibeboard.assetbin.sample_room import make_room

    folder = str(tmp_path / "marigold-iid-appearance-v1-1")
    save_tiny_marigold(folder)
    assert json.load(open(os.path.join(folder, "model_index.json")))["target_properties"]["target_names"] == \
        ["albedo", "material"]
    pipe = load_pipeline(folder)
    room = make_room(width=128, height=96)
    maps = estimate(pipe, room.image, steps=1, processing_resolution=32)
    assert maps["albedo"].shape == (96, 128, 3)
    assert maps["roughness"].shape == (96, 128) and maps["metallic"].shape == (96, 128)
    assert 0 <= float(maps["roughness"].min()) and float(maps["roughness"].max()) <= 1
    assert maps["models"][0].startswith("marigold-iid:")
    res = deconstruct(room.image, room.depth, str(tmp_path / "cache"), Settings(min_object_pixels=20),
                      intrinsics=room.intrinsics, maps=maps)
    assert any(m.startswith("marigold-iid:") for m in res.models)
    assert most_restrictive(res.models)[0] == "unknown"  # the v1-1 card licence is not verified yet
    info = scene_glb.inspect_glb(res.glb_path)
    node = info["nodes"][0]
    metal, rough = pbr.unpack_metallic_roughness(scene_glb.read_texture(info["gltf"], node["textures"]["metallic_roughness"]))
    mask = res.masks[0]
    ys, xs = mask.nonzero(as_tuple=True)
    y0, x0 = max(int(ys.min()) - 2, 0), max(int(xs.min()) - 2, 0)
    expect = maps["roughness"][y0:y0 + rough.shape[0], x0:x0 + rough.shape[1]]
    assert torch.allclose(rough, expect, atol=1 / 255 + 1e-6)  # the estimated map, packed in G


def test_stacked_material_target_splits_in_channel_order():
    pred = torch.stack([torch.full((3, 2, 2), 0.1), torch.stack([torch.full((2, 2), 0.3), torch.full((2, 2), 0.7),
                                                                 torch.zeros(2, 2)])])
    maps = split_targets(pred, APPEARANCE)
    assert float(maps["roughness"][0, 0]) == pytest.approx(0.3) and float(maps["metallic"][0, 0]) == pytest.approx(0.7)
    with pytest.raises(ValueError, match="targets"):
        split_targets(pred[:1], APPEARANCE)
