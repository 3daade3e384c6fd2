"""The one Wan runtime's fixes, each on files in the published layout: ReCo_ref LoRA alpha and reference image,
VACE mask resampling as upstream, the UMT5 tokenizer embedded in ComfyUI's text-encoder file, settings nodes that
return copies, `compile` on Shot Studio nodes, one sampling loop, one seed route, one prompt cleaning."""
import io
import os
import re
import types

import pytest
import torch
from safetensors.torch import save_file

from vibeboard.common import runtime
from vibeboard.models import tiny
from vibeboard.shots import reco, tiny_models
from vibeboard.wan import conditioning as C
from vibeboard.wan import sampler as S
from vibeboard.wan.handle import WanHandle

PACK = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "custom_nodes", "vibeboard")


@pytest.fixture
def models_dir(tmp_path):
    saved = dict(runtime._dirs)
    runtime.set_host_dirs(models=str(tmp_path))
    yield tmp_path
    runtime._dirs.clear()
    runtime._dirs.update(saved)


def _reco_lora(model, rank, seed=0):
    """ReCo's published LoRA layout (PEFT inject_adapter_in_model on DiffSynth's Wan DiT + VACE, adapter
    "default"); the .ckpt holds no alpha: ReCo trains with alpha = rank (128 for ReCo_ori, 256 for ReCo_ref)."""
    from wan_lora_layouts import peft_on_wan_names
    return peft_on_wan_names(model, rank, seed, adapter=".default", roots=("blocks", "vace_blocks"), scale=0.01)


def test_reco_ref_rank256_lora_runs_at_full_strength(models_dir):
    """ReCo_ref_rank256: alpha 256 / rank 256 = scale 1 (a fixed alpha 128 ran it at half strength)."""
    from vibeboard.models import lora as lora_mod
    from vibeboard.shots.nodes_blocking import VBReCoLoRA
    model = tiny_models.wan_vace_transformer()
    sd = _reco_lora(model, 256)
    (models_dir / "loras" / "ReCo").mkdir(parents=True)
    save_file(sd, str(models_dir / "loras" / "ReCo" / "ReCo_ref_rank256-2026_m4_version.safetensors"))
    wan = WanHandle.from_modules(transformer=model)
    new, = VBReCoLoRA().apply(wan, "ReCo/ReCo_ref_rank256-2026_m4_version.safetensors", 1.0)
    assert wan.loras == [] and len(new.loras) == 1                     # a copy; the input handle is unchanged
    lin = model.blocks[0].attn1.to_q
    before = lin.weight.detach().clone()
    a = sd["blocks.0.self_attn.q.lora_A.default.weight"]
    b = sd["blocks.0.self_attn.q.lora_B.default.weight"]
    with lora_mod.applied(model, [new.loras[0][:2]]):
        torch.testing.assert_close(lin.weight - before, b @ a * (256 / 256), rtol=1e-4, atol=1e-6)
    assert torch.equal(lin.weight, before)
    # an explicit alpha still wins (and a PEFT adapter_config.json beside the file would too)
    half, = VBReCoLoRA().apply(wan, "ReCo/ReCo_ref_rank256-2026_m4_version.safetensors", 1.0, alpha=128.0)
    with lora_mod.applied(model, [half.loras[0][:2]]):
        torch.testing.assert_close(lin.weight - before, b @ a * 0.5, rtol=1e-4, atol=1e-6)


def _diffusers_vace_masks(mask, n_ref, patch=2):
    """The upstream mask layout: diffusers' WanVACEPipeline.prepare_masks itself (nearest-exact in time)."""
    from diffusers import WanVACEPipeline
    fake = types.SimpleNamespace(vae_scale_factor_temporal=4, vae_scale_factor_spatial=8, transformer_2=None,
                                 transformer=types.SimpleNamespace(config=types.SimpleNamespace(patch_size=(1, patch,
                                                                                                            patch))))
    refs = [[torch.zeros(1)] * n_ref]  # (None would still pad one reference frame)
    return WanVACEPipeline.prepare_masks(fake, mask[None, None], refs)[0]


def test_vace_mask_temporal_resampling_matches_upstream():
    g = torch.Generator().manual_seed(0)
    mask = (torch.rand(9, 16, 32, generator=g) > 0.5).float()
    mask[8] = 1                                  # the last frame alone: the causal-group max and upstream differ here
    mask[5:8] = 0
    want = _diffusers_vace_masks(mask, 0)
    assert torch.equal(C.vace_mask_latents(mask), want)
    assert not torch.equal(C.vace_mask_latents(mask, temporal="group"), want)


def test_reco_ref_reference_image_is_its_own_vace_reference_input():
    """ReCo_ref: the object picture is a VACE reference image (prepended latent frame, mask 0), not a frame of
    the target half; the canvas mask keeps every target frame generated."""
    torch.manual_seed(0)
    wan = WanHandle.from_modules(transformer=tiny_models.wan_vace_transformer(), vae=tiny_models.wan_vae())
    src = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    obj = torch.rand(1, 24, 12, 3)                                         # an object picture, its own size
    cond, w_lat = reco.reco_conditioning(wan, src, torch.randn(1, 6, 32), reference=obj)
    assert cond.num_ref_frames == 1 and cond.vace_context.shape == (1, 96, 1 + 2, 2, 4)
    _, mask = reco.reco_canvas(src)
    assert torch.equal(cond.vace_context[0, 32:], _diffusers_vace_masks(mask, 1))
    assert cond.vace_context[0, 32:, 1:, :, 2:].eq(1).all()                # target frame 0 is generated too
    ref_lat = C.normalize(wan, C.vae_encode(wan, C.fit_reference(obj, 16, 32)))
    assert torch.equal(cond.vace_context[:, :16, :1], ref_lat)             # the picture, fitted on white
    assert cond.vace_context[:, 16:32, :1].eq(0).all()
    out = S.sample(wan, cond, S.SamplerSettings(steps=2), (1, 16, 2, 2, 4), normalized=True)
    assert out.shape == (1, 16, 2, 2, 4)                                   # the reference frame is dropped


def _spiece_model() -> bytes:
    import sentencepiece as spm
    lines = ["a red cat walks in the city", "a dog runs fast on the beach", "blurry low quality"] * 20
    f = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=f, vocab_size=30,
                                   model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, minloglevel=2)
    return f.getvalue()


def test_text_encoder_file_with_embedded_tokenizer_needs_no_folder(models_dir):
    """ComfyUI's UMT5 single files carry the SentencePiece model as a `spiece_model` uint8 tensor."""
    import sentencepiece as spm
    from safetensors.torch import load_file
    from vibeboard.wan.nodes import VBWanModelLoader
    paths = tiny.write_comfy_layout(str(models_dir), kinds=("t2v",))
    proto = _spiece_model()
    te = models_dir / "text_encoders" / "umt5_xxl_fp8_e4m3fn_scaled.safetensors"
    state = load_file(str(te))
    state["spiece_model"] = torch.frombuffer(bytearray(proto), dtype=torch.uint8)
    save_file(state, str(te))
    import shutil
    shutil.rmtree(paths["tokenizer"])                                     # no tokenizer folder anywhere
    wan, = VBWanModelLoader().load("wan2.1_t2v_1.3B_bf16.safetensors", "wan_2.1_vae.safetensors",
                                   "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "fp32")
    tok = wan.tokenizer(["a red dog"], max_length=8)
    ids = spm.SentencePieceProcessor(model_proto=proto).encode("a red dog")
    assert tok.input_ids[0].tolist() == (ids[:7] + [1] + [0] * 8)[:8]  # pieces + </s> (kept when truncating)
    assert tok.attention_mask[0].sum() == min(len(ids), 7) + 1
    full = wan.tokenizer(["a red dog"], max_length=64)
    assert full.input_ids[0, :len(ids) + 1].tolist() == ids + [1] and full.input_ids[0, len(ids) + 1:].eq(0).all()
    emb = C.encode_text(wan, ["a red dog", "blurry"])
    assert emb.shape == (2, 512, 32) and emb[0, len(ids) + 1:].eq(0).all()


def test_text_encoder_file_without_tokenizer_uses_the_folder(models_dir):
    from vibeboard.models import loaders
    paths = tiny.write_comfy_layout(str(models_dir), kinds=("t2v",))
    assert loaders.tokenizer_from_checkpoint(paths["umt5"]) is None
    from vibeboard.wan.handle import load_wan
    wan = load_wan(paths["t2v"], paths["vae"], paths["umt5"], paths["tokenizer"], dtype="fp32")
    from vibeboard.models.spiece import SentencePieceTokenizer
    assert wan.tokenizer is not None and not isinstance(wan.tokenizer, SentencePieceTokenizer)


def test_memory_settings_return_a_copy_and_leave_the_shared_model_alone():
    from vibeboard.models.vram import VramManager
    from vibeboard.wan.nodes import VBWanMemory
    model = tiny_models.wan_transformer(in_channels=16)
    wan = WanHandle.from_modules(VramManager(device="cpu"), transformer=model, dtype=torch.float32)
    entry = wan.manager.models[wan.keys["transformer"]]
    registered = (entry.mode, entry.resident_blocks)
    swapped, = VBWanMemory().apply(wan, "block_swap", 1, "auto")
    assert swapped is not wan and swapped.placement["transformer"] == ("blockswap", 1)
    assert wan.placement == {} and (entry.mode, entry.resident_blocks) == registered  # nothing changed yet
    with swapped.use("transformer"):
        assert (entry.mode, entry.resident_blocks) == ("blockswap", 1)
    with wan.use("transformer"):                          # the original handle runs with its own placement
        assert (entry.mode, entry.resident_blocks) == registered


def test_compile_setting_reaches_shot_studio_nodes(monkeypatch):
    """`compile` was dropped on every Shot Studio node: they sampled outside the Wan sampler."""
    from vibeboard.shots.memory_bank import MemoryEntry, StoryMemoryBank
    from vibeboard.shots.nodes_story import VBStoryMemShot
    compiled = []
    monkeypatch.setattr(S, "compile_supported", lambda handle, entry: True)
    monkeypatch.setattr(S, "compile_blocks", lambda model: compiled.append(model) or True)
    model = tiny_models.wan_transformer(in_channels=36)
    wan = WanHandle.from_modules(transformer=model, vae=tiny_models.wan_vae(), tokenizer=None)
    bank = StoryMemoryBank()
    bank.add(MemoryEntry(image=torch.zeros(16, 16, 3, dtype=torch.uint8)), dedup=False)
    text = {"prompt_embeds": torch.randn(1, 6, 32), "negative_embeds": torch.randn(1, 6, 32)}
    settings = S.SamplerSettings(steps=1, compile=True)
    VBStoryMemShot().generate(wan, text, bank, 16, 16, 5, sampler=settings)
    assert compiled == [model]


def test_one_sampling_loop_and_one_seed_route():
    """Only wan/sampler.py steps a scheduler or draws noise for a Wan model; no Wan-based node takes a seed of
    its own (the seed reaches the model through Wan Sampler Settings only)."""
    stepping = re.compile(r"\.step\(|torch\.randn\(|flow_sigmas|set_timesteps\(")
    offenders = []
    for folder in ("wan", "shots", "vfx"):
        for name in os.listdir(os.path.join(PACK, folder)):
            if not name.endswith(".py") or (folder, name) == ("wan", "sampler.py"):
                continue
            if folder == "vfx" and not name.startswith(("infcam", "nodes")):
                continue  # GenFocus / Qwen / focus tools are not Wan-based
            text = open(os.path.join(PACK, folder, name), encoding="utf-8").read()
            if folder == "vfx" and name == "nodes.py":
                text = text[text.index("class VBInfCamLoader"):text.index("class VBRotationPreview")]
            text = "\n".join(line for line in text.splitlines() if "nn.Parameter(" not in line)  # weight init
            offenders += [f"{folder}/{name}: {m.group(0)}" for m in stepping.finditer(text)]
    assert offenders == []
    from vibeboard.shots import nodes as shot_nodes
    from vibeboard.vfx import nodes as vfx_nodes
    from vibeboard.wan import nodes as wan_nodes
    generators = {**{k: v for k, v in wan_nodes.NODE_CLASS_MAPPINGS.items() if k != "VBWanSamplerSettings"},
                  **shot_nodes.NODE_CLASS_MAPPINGS, "VBChangeCamera": vfx_nodes.VBChangeCamera,
                  "VBInfCamLoader": vfx_nodes.VBInfCamLoader}
    for name, cls in generators.items():
        spec = cls.INPUT_TYPES()
        names = set(spec.get("required", {})) | set(spec.get("optional", {}))
        assert "seed" not in names, name
    # the InfCam prompt comes from Wan Text Encode (one cleaning, one cache), never from a widget of its own
    assert not {"prompt", "negative_prompt"} & set(vfx_nodes.VBChangeCamera.INPUT_TYPES()["required"])
