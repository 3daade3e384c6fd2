"""SAM masks through transformers, from a tiny random SamModel saved in the published HF layout."""
import os

import pytest
import torch

from vibeboard.assetbin.sam_masks import SamMasker, check_folder


def save_tiny_sam(folder):
    from transformers import (SamConfig, SamImageProcessor, SamMaskDecoderConfig, SamModel,
                              SamPromptEncoderConfig, SamVisionConfig)

    torch.manual_seed(0)
    vision = SamVisionConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_dim=64,
                             image_size=64, patch_size=16, output_channels=16, global_attn_indexes=[1],
                             window_size=2, num_pos_feats=8)
    prompt = SamPromptEncoderConfig(hidden_size=16, image_size=64, patch_size=16, mask_input_channels=4)
    decoder = SamMaskDecoderConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, mlp_dim=32,
                                   iou_head_hidden_dim=16)
    model = SamModel(SamConfig(vision_config=vision.to_dict(), prompt_encoder_config=prompt.to_dict(),
                               mask_decoder_config=decoder.to_dict()))
    model.save_pretrained(folder, safe_serialization=True)
    # the published repos ship only the image processor config (preprocessor_config.json)
    SamImageProcessor(size={"longest_edge": 64}, pad_size={"height": 64, "width": 64}).save_pretrained(folder)


def test_tiny_sam_in_the_published_layout_gives_full_size_masks(tmp_path):
    folder = str(tmp_path / "sam-vit-huge")
    save_tiny_sam(folder)
    assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= set(os.listdir(folder))
    masker = SamMasker(folder)
    image = torch.rand(48, 40, 3, generator=torch.Generator().manual_seed(1))
    masks = masker.instances(image, points_per_side=3, iou_threshold=-1e9, min_pixels=1, dedupe_iou=1.01)
    assert masks.dtype == torch.bool and masks.shape[1:] == (48, 40)
    assert 1 <= len(masks) <= 9
    # an impossible IoU bar keeps nothing: the threshold is applied
    assert len(masker.instances(image, points_per_side=2, iou_threshold=1e9)) == 0


def test_a_folder_without_the_published_files_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        check_folder(str(tmp_path))


def test_tiny_random_sam_drives_deconstruct_to_a_glb(tmp_path):
    """The SAM path end to end: its masks (random here) are filtered to what stands on the floor, meshed,
    laid out and written; the GLB opens with one textured node per kept mask and names SAM among its makers."""
    trimesh = pytest.importorskip("trimesh")
    from vibeboard.assetbin import scene_glb
    from vibeboard.assetbin.deconstruct import Settings, deconstruct
    from vibeboard.assetbin.sample_room import make_room

    folder = str(tmp_path / "sam-vit-huge")
    save_tiny_sam(folder)
    sam = SamMasker(folder, points_per_side=4, iou_threshold=-1e9)  # a random model's IoU scores mean nothing
    room = make_room(128, 96)
    res = deconstruct(room.image, room.depth, str(tmp_path / "cache"), Settings(min_object_pixels=20),
                      intrinsics=room.intrinsics, sam=sam)
    assert res.models == ["depth (given)", "sam:sam-vit-huge"]
    scene = trimesh.load(res.glb_path, force="scene")
    assert len(scene.graph.nodes_geometry) == len(res.objects) >= 1
    for node in scene_glb.inspect_glb(res.glb_path)["nodes"]:
        assert set(node["textures"]) == {"base_color", "metallic_roughness", "normal"}
    for mask in res.masks:  # every kept mask stands mostly above the floor
        assert float((res.points[..., 1][mask] > 0.03).float().mean()) > 0.5
