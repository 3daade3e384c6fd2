"""Character Foundry nodes: thin wrappers over actor_card, lora_trainer, flashportrait(+_wan), performance,
elevenlabs_tts and continuity. An actor is a VB_ACTOR handle {"db_path", "actor"} into the project's asset DB."""
from __future__ import annotations

import json
import os

import numpy as np
import torch

from ..common import grad, runtime
from ..common.runtime import NodeInputError

CATEGORY = "VibeBoard/Character Foundry"
TINY = "tiny-random (test, no weights)"
_DB = ("STRING", {"default": "script_lab/project.vbdb", "tooltip": "The project's asset database (Script Lab's; "
                  "created if missing), relative to the output folder."})


def _db_path(node: str, value: str) -> str:
    return runtime.user_path(node, "db_path", (value or "").strip() or "script_lab/project.vbdb",
                             runtime.output_directory())


def _cards(handle: dict):
    from .actor_card import ActorCards
    return ActorCards(handle["db_path"])


def _save_png(node: str, image: torch.Tensor, prefix: str) -> str:
    from PIL import Image
    from ..sequencer import node_io
    path, _ = node_io.output_file(node, prefix, "png")
    Image.fromarray((image.clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)).save(path)
    return path


class VBSamplePortrait:
    DESCRIPTION = ("A procedural test portrait (face oval, eyes, mouth; deterministic from the seed) so the "
                   "Character Foundry workflow runs with no photos. Not a person; licence: generated (CC0).")
    CATEGORY = CATEGORY
    FUNCTION = "make"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)
    OUTPUT_TOOLTIPS = ("the procedural test portrait, float 0..1",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "size": ("INT", {"default": 64, "min": 16, "max": 2048, "step": 16, "tooltip": "Square size (px)."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFF, "tooltip": "Colour and shape seed."}),
        }}

    def make(self, size, seed):
        rng = np.random.default_rng(int(seed))
        n = int(size)
        y, x = np.mgrid[0:n, 0:n] / n
        img = np.ones((n, n, 3), np.float32) * 0.5
        face = ((x - 0.5) / 0.3) ** 2 + ((y - 0.5) / 0.4) ** 2 < 1
        img[face] = rng.uniform(0.5, 0.9, 3)
        for ex in (0.38, 0.62):
            img[((x - ex) / 0.05) ** 2 + ((y - 0.42) / 0.03) ** 2 < 1] = 0.1
        img[((x - 0.5) / 0.12) ** 2 + ((y - 0.68) / 0.03) ** 2 < 1] = (0.6, 0.1, 0.1)
        return (torch.from_numpy(img)[None],)


class VBActorCard:
    DESCRIPTION = ("Create or update an actor card in the project's asset DB: face references (front / "
                   "three-quarter / profile) with the licence of each, the voice (provider voice id, settings, "
                   "seed, licence) and the Script Lab character the actor plays. Returns the actor handle and "
                   "the card as JSON (faces, wardrobe per script day, LoRAs, every input's licence).")
    CATEGORY = CATEGORY
    FUNCTION = "card"
    RETURN_TYPES = ("VB_ACTOR", "STRING")
    RETURN_NAMES = ("actor", "card_json")
    OUTPUT_TOOLTIPS = ("the actor handle for the Foundry nodes",
                       "the card as JSON (faces, voice, wardrobe, LoRAs, licences)")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "db_path": _DB,
            "actor": ("STRING", {"default": "Ana Reyes", "tooltip": "The actor's name (one card per name)."}),
            "character": ("STRING", {"default": "MARA", "tooltip": "The Script Lab character this actor plays."}),
            "face_licence": ("STRING", {"default": "generated (CC0)", "tooltip": "Licence / release of the face "
                                        "images given here (required: e.g. 'talent release #12', 'own photo')."}),
        }, "optional": {
            "face_front": ("IMAGE", {"tooltip": "Front face reference."}),
            "face_three_quarter": ("IMAGE", {"tooltip": "Three-quarter face reference."}),
            "face_profile": ("IMAGE", {"tooltip": "Profile face reference."}),
            "voice_provider": (["none", "elevenlabs"], {"default": "none", "tooltip":
                               "TTS provider of the voice (none = no voice on the card)."}),
            "voice_id": ("STRING", {"default": "", "tooltip": "The provider's voice id."}),
            "voice_settings": ("STRING", {"default": "", "multiline": True,
                                          "tooltip": "JSON voice settings, e.g. {\"stability\": 0.5}."}),
            "voice_seed": ("INT", {"default": -1, "min": -1, "max": 0xFFFFFFFF, "tooltip": "-1 = no seed."}),
            "voice_licence": ("STRING", {"default": "", "tooltip": "Licence of the voice (required with a voice)."}),
        }}

    def card(self, db_path, actor, character, face_licence, face_front=None, face_three_quarter=None,
             face_profile=None, voice_provider="none", voice_id="", voice_settings="", voice_seed=-1,
             voice_licence=""):
        from .actor_card import ActorCardError, ActorCards
        from ..sequencer import node_io
        node = runtime.node_label(VBActorCard)
        try:
            cards = ActorCards(_db_path(node, db_path))
            cards.create(actor, character=character)
            for kind, image in (("face_front", face_front), ("face_three_quarter", face_three_quarter),
                                ("face_profile", face_profile)):
                if image is not None:
                    path = _save_png(node, image[0], f"vibeboard/actors/{actor.replace(' ', '_')}_{kind}")
                    cards.add_image(actor, kind, path, face_licence)
            if voice_provider != "none":
                settings = node_io.json_input(node, "voice_settings", voice_settings)
                cards.set_voice(actor, voice_provider, voice_id, voice_licence, settings,
                                None if voice_seed < 0 else int(voice_seed))
            card = cards.card(actor)
        except ActorCardError as exc:
            raise NodeInputError(node, "actor", str(exc)) from None
        handle = {"db_path": cards.db.path, "actor": actor}
        return handle, json.dumps(card, indent=1, default=str)


def _tiny_wan_encoders():
    from ..models import tiny
    vae, text = tiny.build_vae(), tiny.build_umt5()
    with grad.training_mode():  # the DiT trains: built outside the node's inference mode, its weights train-able
        net = tiny.build_transformer("t2v")
    words = {w: i for i, w in enumerate(tiny.TINY_WORDS)}

    def enc_image(x):
        return vae.encode(x[:, :, None]).latent_dist.mode()[0]

    def enc_text(caption):
        ids = torch.tensor([[words.get(w, 2) for w in caption.lower().split()][:16] or [2]])
        ids = torch.nn.functional.pad(ids, (0, 16 - ids.shape[1]))
        mask = (ids > 0).long()
        return text(ids, attention_mask=mask).last_hidden_state[0] * mask[0, :, None], mask[0]
    return net, enc_image, enc_text


def _tokenizer_folder(node: str, tokenizer: str):
    """The tokenizer folder when it exists; None when it does not (a umT5 file that embeds its tokenizer needs none;
    the Wan runtime's loader says so when neither is there)."""
    from ..models import loaders
    if not (tokenizer or "").strip():
        return None
    try:
        return loaders.model_path(node, "tokenizer", tokenizer, must_be_dir=True)
    except NodeInputError:
        return None


def _wan_parts(node, vae, text_encoder, tokenizer, clip_vision=None, dtype="bf16"):
    """A Wan handle over the VAE / umT5 (/ CLIP-H) files, loaded through the Wan runtime (cached in the VRAM
    manager, tokenizer from the checkpoint when it carries one), without a DiT."""
    from ..models import loaders, vram
    from ..wan.handle import WanHandle, load_parts
    keys, tok = load_parts(vram.manager(), vae=loaders.model_path(node, "vae", vae), vae_dtype=dtype,
                           text_encoder=loaders.model_path(node, "text_encoder", text_encoder),
                           tokenizer_folder=_tokenizer_folder(node, tokenizer),
                           image_encoder=loaders.model_path(node, "clip_vision", clip_vision) if clip_vision else None)
    if tok is None:
        raise NodeInputError(node, "tokenizer", f"the umT5 tokenizer was not found: {text_encoder} carries none and "
                             f"{tokenizer} is not a tokenizer folder (vibeboard models pull umt5-tokenizer)")
    return WanHandle(variant="i2v", keys=keys, tokenizer=tok, manager=vram.manager(),
                     dtype=loaders.compute_dtype(dtype))


def _wan_encoders(node, transformer, vae, text_encoder, tokenizer, dtype):
    """(trainable DiT, image → normalised latents, caption → (embeds, mask)). The DiT is a private copy (PEFT
    wraps it); the VAE and umT5 run through the Wan runtime, so captions get the same prompt cleaning,
    tokenizer (embedded or folder) and prompt cache as every Wan node."""
    from ..models import loaders
    from ..wan import conditioning as C
    with grad.training_mode():  # weights loaded under the node's inference mode could never be used for backward
        model = loaders.load_wan_transformer(loaders.model_path(node, "model", transformer), dtype)
    handle = _wan_parts(node, vae, text_encoder, tokenizer, dtype=dtype)

    def enc_image(x):  # normalised latents, as the sampler sees them (the runtime's one normalisation)
        return C.normalize(handle, C.vae_encode(handle, x[:, :, None]))[0]

    def enc_text(caption):
        embeds, mask = C.encode_text(handle, caption, return_mask=True)
        return embeds[0], mask[0]
    return model, enc_image, enc_text


class VBActorLoraTrain:
    DESCRIPTION = ("Train an actor LoRA from the card's images and captions (PEFT on the Wan transformer; "
                   "latents and text embeddings cached on disk, aspect buckets, gradient checkpointing, resumable "
                   "checkpoints, progress with loss). Saves ComfyUI/kohya + diffusers/PEFT files and records the "
                   "LoRA on the card. 'tiny-random' trains a tiny random model (checks the pipeline; no weights).")
    CATEGORY = CATEGORY
    FUNCTION = "train"
    OUTPUT_NODE = True
    RETURN_TYPES = ("STRING", "STRING")
    RETURN_NAMES = ("lora_path", "report_json")
    OUTPUT_TOOLTIPS = ("path of the trained LoRA (ComfyUI/kohya safetensors)",
                       "JSON: steps, loss curve, files written")

    @classmethod
    def INPUT_TYPES(cls):
        from ..models import registry
        return {"required": {
            "actor": ("VB_ACTOR", {"tooltip": "The actor card to train from (its images and captions)."}),
            "model": ([TINY] + registry.choices("diffusion_models"), {"default": TINY, "tooltip":
                      "Wan transformer file (models/diffusion_models) or the tiny random test model."}),
            "steps": ("INT", {"tooltip": "Optimiser steps (the tiny test model needs only a few).",
                "default": 4, "min": 1, "max": 100000}),
            "rank": ("INT", {"tooltip": "LoRA rank (alpha = rank).", "default": 16, "min": 1, "max": 256}),
            "learning_rate": ("FLOAT", {"tooltip": "AdamW learning rate.",
                "default": 1e-4, "min": 1e-7, "max": 1.0, "step": 1e-5}),
            "resolution": ("INT", {"tooltip": "Bucket area = resolution² (aspect buckets, edges multiples of 16).",
                "default": 512, "min": 64, "max": 2048, "step": 16}),
            "trigger": ("STRING", {"default": "", "tooltip": "Trigger word put before every caption "
                                                             "(default: the actor's name)."}),
            "filename_prefix": ("STRING", {"tooltip": "Where the LoRA files and the training folder (cache, "
                                                      "checkpoint) go.",
                "default": "vibeboard/loras/actor"}),
        }, "optional": {
            "vae": ("STRING", {"tooltip": "Wan VAE file (models-relative) for the latent cache.",
                "default": "vae/wan_2.1_vae.safetensors"}),
            "text_encoder": ("STRING", {"tooltip": "umT5 text encoder file (models-relative) for the caption cache.",
                "default": "text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors"}),
            "tokenizer": ("STRING", {"tooltip": "umT5 tokenizer folder (models-relative).",
                "default": "text_encoders/umt5-xxl"}),
            "resume": ("BOOLEAN", {"default": True, "tooltip": "Continue from this prefix's last checkpoint."}),
        }}

    def train(self, actor, model, steps, rank, learning_rate, resolution, trigger, filename_prefix,
              vae="vae/wan_2.1_vae.safetensors", text_encoder="text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors",
              tokenizer="text_encoders/umt5-xxl", resume=True):
        from . import lora_dataset as D
        from . import lora_trainer as T
        node = runtime.node_label(VBActorLoraTrain)
        cards = _cards(actor)
        images = [i for i in cards.images(actor["actor"]) if i["kind"] != "extra"]
        if not images:
            raise NodeInputError(node, "actor", f"{actor['actor']}'s card has no images to train on")
        trigger = (trigger or actor["actor"]).strip()
        try:
            if model == TINY:
                net, enc_image, enc_text = _tiny_wan_encoders()
                resolution, key = 64, "tiny"
            else:
                net, enc_image, enc_text = _wan_encoders(node, f"diffusion_models/{model}", vae, text_encoder,
                                                         tokenizer, "bf16")
                key = model
        except T.TrainerError as exc:
            raise NodeInputError(node, "model", str(exc)) from None
        work = os.path.join(runtime.output_directory(), filename_prefix + "_work")
        work = runtime.user_path(node, "filename_prefix", work, runtime.output_directory())
        cache = D.LatentCache(os.path.join(work, "cache"), key, enc_image, enc_text)
        samples = [D.Sample(i["path"], f"{trigger} {i['caption'] or i['kind'].replace('_', ' ')}") for i in images]
        items = D.build_items(samples, cache, int(resolution))
        cfg = T.TrainConfig(family="wan", rank=int(rank), alpha=float(rank), learning_rate=float(learning_rate),
                            steps=int(steps), resolution=int(resolution), save_every=max(1, int(steps) // 4))
        bar = runtime.progress_bar(int(steps))
        losses = []

        def on_step(step, total, loss):
            losses.append(loss)
            bar.update_absolute(step, total)
        try:
            result = T.train(net, items, cfg, work, resume=bool(resume), on_step=on_step)
        except T.TrainerError as exc:
            raise NodeInputError(node, "actor", str(exc)) from None
        name = os.path.basename(filename_prefix) or "actor"
        paths = T.export(net, result["names"], cfg, os.path.dirname(os.path.join(runtime.output_directory(),
                                                                                  filename_prefix)), name,
                         metadata={"vibeboard_actor": actor["actor"], "trigger": trigger})
        cards.add_lora(actor["actor"], key, paths["comfyui"], "comfyui+diffusers", cfg.rank, result["step"],
                       [i["id"] for i in images], trigger=trigger)
        report = {"steps": result["step"], "losses": result["losses"], "files": paths,
                  "cache": {"hits": cache.hits, "misses": cache.misses}, "checkpoint": result["checkpoint"]}
        return paths["comfyui"], json.dumps(report, indent=1)


class VBElevenLabsSpeech:
    DESCRIPTION = ("Speech from ElevenLabs /with-timestamps (needs an API key in the environment): AUDIO plus "
                   "per-word and per-character times for captions and lip-sync. Uses the actor card's voice when "
                   "an actor is given. 401/429/5xx are reported with the provider's message.")
    CATEGORY = CATEGORY
    FUNCTION = "speak"
    RETURN_TYPES = ("AUDIO", "STRING")
    RETURN_NAMES = ("audio", "timings_json")
    OUTPUT_TOOLTIPS = ("the speech", "JSON: per-word and per-character start/end times")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "text": ("STRING", {"tooltip": "What the actor says.",
                "default": "I kept the light burning.", "multiline": True}),
            "api_key_env": ("STRING", {"default": "ELEVENLABS_API_KEY", "tooltip": "Environment variable holding "
                                                                                  "the key (never the key)."}),
        }, "optional": {
            "actor": ("VB_ACTOR", {"tooltip": "Use this actor card's voice (id, settings, seed)."}),
            "voice_id": ("STRING", {"default": "", "tooltip": "Overrides the card's voice."}),
            "base_url": ("STRING", {"default": "", "tooltip": "API base URL (default: ElevenLabs)."}),
        }}

    def speak(self, text, api_key_env, actor=None, voice_id="", base_url=""):
        from . import elevenlabs_tts as tts
        from ..media.audio import to_audio_dict
        node = runtime.node_label(VBElevenLabsSpeech)
        settings, seed = None, None
        if actor is not None and not voice_id:
            voice = _cards(actor).card(actor["actor"])["voice"]
            if voice is None:
                raise NodeInputError(node, "actor", f"{actor['actor']}'s card has no voice; set one or give voice_id")
            voice_id, settings, seed = voice["voice_id"], voice["settings"], voice["seed"]
        if not voice_id:
            raise NodeInputError(node, "voice_id", "no voice (give voice_id or an actor with a voice)")
        try:
            speech = tts.synthesize(text, voice_id, os.environ.get(api_key_env.strip(), ""), settings=settings,
                                    seed=seed, base_url=base_url.strip() or None)
        except tts.TTSError as exc:
            raise NodeInputError(node, "text" if exc.status else "api_key_env", str(exc)) from None
        timings = {"words": speech.words(), "characters": speech.characters, "starts": speech.starts,
                   "ends": speech.ends}
        return to_audio_dict(speech.waveform, speech.sample_rate), json.dumps(timings)


class VBFlashPortrait:
    DESCRIPTION = ("FlashPortrait (Wan2.1-I2V-14B + expression cross-attention) on the Wan runtime: the reference "
                   "portrait performs the expressions of a driving video, conformed to the output frame rate first; "
                   "long clips in sliding windows with linear blending; separate text and expression CFG (text CFG "
                   "1 = upstream's default, off); memory modes mapped onto the VRAM manager (sequential = block "
                   "swap). Needs weights: the FlashPortrait files (vibeboard models pull flashportrait) and "
                   "Wan2.1-I2V-14B's VAE, umT5 and CLIP-H (from the file inputs, or a wired Wan model).")
    CATEGORY = CATEGORY
    FUNCTION = "perform"
    RETURN_TYPES = ("IMAGE", "AUDIO")
    RETURN_NAMES = ("frames", "audio")
    OUTPUT_TOOLTIPS = ("the animated portrait frames, float 0..1",
                       "the driving video's audio, conformed to the output")

    @classmethod
    def INPUT_TYPES(cls):
        from .flashportrait_wan import MEMORY_MODES
        return {"required": {
            "folder": ("STRING", {"default": "checkpoints/FlashPortrait", "tooltip": "Folder (models-relative) "
                                  "with transformer.pt, portrait_encoder.pt, pd_fpg.pth, face_det.onnx, "
                                  "face_landmark.onnx."}),
            "reference": ("IMAGE", {"tooltip": "The portrait that performs (first image used)."}),
            "driving_video": ("STRING", {"default": "", "tooltip": "Driving video (output-relative or absolute)."}),
            "prompt": ("STRING", {"tooltip": "Text prompt for the Wan I2V base.",
                "default": "a person talking", "multiline": True}),
            "fps": ("FLOAT", {"default": 24.0, "min": 1.0, "max": 120.0, "tooltip": "Output frame rate; the "
                              "driver is resampled to it first."}),
            "steps": ("INT", {"tooltip": "Sampling steps.", "default": 30, "min": 1, "max": 200}),
            "text_cfg": ("FLOAT", {"tooltip": "Text guidance scale (upstream's default 1 = off: one pass fewer per "
                                              "step).", "default": 1.0, "min": 1.0, "max": 20.0}),
            "emo_cfg": ("FLOAT", {"tooltip": "Expression guidance scale (2–5 upstream).",
                "default": 4.0, "min": 1.0, "max": 20.0}),
            "context_size": ("INT", {"default": 51, "min": 2, "max": 81, "tooltip": "Latent frames per window "
                                     "(upstream 51 = 201 frames; lower it to save VRAM)."}),
            "context_overlap": ("INT", {"tooltip": "Latent frames shared by consecutive windows (blended linearly; "
                                        "upstream 30).", "default": 30, "min": 0, "max": 80}),
            "memory_mode": (list(MEMORY_MODES), {"tooltip": "full: fastest, most VRAM; model_cpu_offload; "
                                                            "sequential_cpu_offload: least VRAM.",
                "default": "model_cpu_offload"}),
            "seed": ("INT", {"tooltip": "Noise seed.", "default": 0, "min": 0, "max": 0xFFFFFFFF}),
        }, "optional": {
            "vae": ("STRING", {"tooltip": "Wan 2.1 VAE file (models-relative).",
                "default": "vae/wan_2.1_vae.safetensors"}),
            "text_encoder": ("STRING", {"tooltip": "umT5-XXL text encoder file (models-relative).",
                "default": "text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors"}),
            "tokenizer": ("STRING", {"tooltip": "umT5 tokenizer folder (models-relative).",
                "default": "text_encoders/umt5-xxl"}),
            "clip_vision": ("STRING", {"tooltip": "CLIP-H vision file (models-relative) for the I2V image context.",
                "default": "clip_vision/clip_vision_h.safetensors"}),
            "wan": ("VB_WAN", {"tooltip": "A loaded Wan2.1 I2V model (VAE, umT5, CLIP-H): used instead of the "
                                          "file inputs above; its DiT is replaced by FlashPortrait's."}),
        }}

    def perform(self, folder, reference, driving_video, prompt, fps, steps, text_cfg, emo_cfg, context_size,
                context_overlap, memory_mode, seed, vae="vae/wan_2.1_vae.safetensors",
                text_encoder="text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors",
                tokenizer="text_encoders/umt5-xxl", clip_vision="clip_vision/clip_vision_h.safetensors", wan=None):
        from . import flashportrait as fp, flashportrait_wan as fw, performance as perf
        from .face_features import driving_features
        from ..media.audio import to_audio_dict, empty_audio
        from ..sequencer import node_io
        node = runtime.node_label(VBFlashPortrait)
        files = fp.resolve_files(node, "folder", folder)  # every missing file is named before any loading
        if memory_mode not in fw.MEMORY_MODES:
            raise NodeInputError(node, "memory_mode", f"one of {list(fw.MEMORY_MODES)}, not {memory_mode!r}")
        video_path = node_io.media_file(node, "driving_video", driving_video)
        frames, audio, _ = perf.conform_driving_video(video_path, float(fps))
        base = wan if wan is not None else _wan_parts(node, vae, text_encoder, tokenizer, clip_vision)
        for part in ("vae", "text_encoder", "image_encoder"):
            if not base.has(part):
                raise NodeInputError(node, "wan", f"the wired Wan model has no {part} (FlashPortrait needs the "
                                     "Wan2.1 I2V VAE, umT5 and CLIP-H)")
        handle = fw.load_handle(base, files["transformer.pt"]).with_memory_mode(fw.MEMORY_MODES[memory_mode])
        device = handle.device
        enc = fp.load_portrait_encoder(files["portrait_encoder.pt"])
        feats = driving_features(frames, files, device)
        with torch.no_grad():
            tokens = enc.to(device)(feats.to(device)).cpu()
        try:
            out = fw.generate(handle, reference[:1], prompt, tokens, frames.shape[0], steps=int(steps),
                              text_cfg=float(text_cfg), emo_cfg=float(emo_cfg), context_size=int(context_size),
                              context_overlap=int(context_overlap), seed=int(seed))
        except fp.FlashPortraitError as exc:
            raise NodeInputError(node, "reference", str(exc)) from None
        return out, (to_audio_dict(*audio) if audio is not None else empty_audio())


class VBPerformanceCheck:
    DESCRIPTION = ("Continuity guard for a performance already in Dailies: lip-sync offset in frames (mouth-open "
                   "envelope vs silero-vad-gated speech; flagged over 1 frame) and identity drift against the "
                   "actor card's face references (a transformers vision model folder under models/, e.g. a CLIP "
                   "or DINOv2 Hugging Face folder). Findings are stored as machine notes on the version. The "
                   "identity check needs weights (the vision model folder); lip-sync needs none.")
    CATEGORY = CATEGORY
    FUNCTION = "check"
    OUTPUT_NODE = True
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("report_json",)
    OUTPUT_TOOLTIPS = ("JSON: lip-sync offset and identity drift findings",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "project": ("STRING", {"default": "demo", "tooltip": "Dailies project."}),
            "version_id": ("STRING", {"default": "", "tooltip": "The version to check (e.g. sh010_v001)."}),
        }, "optional": {
            "actor": ("VB_ACTOR", {"tooltip": "Actor card whose face references identity is checked against."}),
            "vision_model": ("STRING", {"default": "", "tooltip": "models-relative Hugging Face folder of a vision "
                                        "model for identity embeddings (empty: identity not checked)."}),
        }}

    def check(self, project, version_id, actor=None, vision_model=""):
        from PIL import Image
        from . import continuity as C
        from ..dailies.nodes import open_store
        from ..dailies.store import DailiesError
        from ..media.video import load_video
        node = runtime.node_label(VBPerformanceCheck)
        store = open_store(node, project)
        try:
            version = store.version(version_id.strip())
        except DailiesError as exc:
            raise NodeInputError(node, "version_id", str(exc)) from None
        clip = load_video(version["path"])
        report = {"lipsync": None, "identity": None}
        if clip.audio is not None:
            report["lipsync"] = C.lipsync_report(clip.frames, clip.audio[0], clip.audio[1], clip.fps)
        if actor is not None and vision_model.strip():
            from transformers import AutoModel
            from ..models import loaders
            model = AutoModel.from_pretrained(loaders.model_path(node, "vision_model", vision_model, True),
                                              use_safetensors=True, local_files_only=True).eval()
            model = getattr(model, "vision_model", model)
            refs = [i for k, v in _cards(actor).card(actor["actor"])["faces"].items() for i in v]
            if not refs:
                raise NodeInputError(node, "actor", f"{actor['actor']}'s card has no face references")
            ref = torch.stack([torch.from_numpy(np.asarray(Image.open(r["path"]).convert("RGB").resize(
                (clip.frames.shape[2], clip.frames.shape[1])), np.float32) / 255) for r in refs])
            report["identity"] = C.identity_report(clip.frames, ref, C.vision_embedder(model))
        notes = C.notes_for(report["lipsync"], report["identity"], clip.frames.shape[0],
                            actor["actor"] if actor else "")
        report["notes"] = C.attach(store, version["id"], notes)
        return (json.dumps(report, indent=1, default=str),)


class VBCari4DContactOptimise:
    DESCRIPTION = ("CARI4D's contact-aware optimisation: per-frame body (SMPL-H) and object tracks (an npz with "
                   "pose [T,52,3], betas, transl, obj_rot, obj_transl, obj_points, contacts [T,V] — e.g. CoCoNet's "
                   "refined output) are optimised so predicted contacts touch the object and motion is smooth; "
                   "saves a motion asset (npz + JSON) for Stagecraft. The SMPL-H model.npz is yours to download "
                   "after registering at mano.is.tue.mpg.de; it is never shipped.")
    CATEGORY = CATEGORY
    FUNCTION = "optimise"
    OUTPUT_NODE = True
    RETURN_TYPES = ("STRING", "STRING")
    RETURN_NAMES = ("motion_asset", "summary_json")
    OUTPUT_TOOLTIPS = ("path of the saved motion asset (npz + JSON) for Stagecraft",
                       "JSON: losses before/after, contact and smoothness figures")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "body_model": ("STRING", {"default": "smplh/neutral/model.npz", "tooltip": "models-relative SMPL-H npz."}),
            "tracks": ("STRING", {"default": "", "tooltip": "npz of per-frame estimates (output-relative)."}),
            "fps": ("FLOAT", {"tooltip": "Frame rate of the tracks (stored in the motion asset).",
                "default": 30.0, "min": 1.0, "max": 240.0}),
            "iterations": ("INT", {"tooltip": "Adam steps of the joint optimisation.",
                "default": 100, "min": 1, "max": 10000}),
            "contact_weight": ("FLOAT", {"tooltip": "Weight of contact vertices → object surface distance.",
                "default": 100.0, "min": 0.0, "max": 1e6}),
            "smooth_weight": ("FLOAT", {"tooltip": "Weight of joint and object accelerations.",
                "default": 10.0, "min": 0.0, "max": 1e6}),
            "filename_prefix": ("STRING", {"tooltip": "Output name prefix (npz + json), inside the output folder.",
                "default": "vibeboard/motion/take"}),
        }}

    def optimise(self, body_model, tracks, fps, iterations, contact_weight, smooth_weight, filename_prefix):
        from . import cari4d as C
        from ..models import loaders
        from ..sequencer import node_io
        node = runtime.node_label(VBCari4DContactOptimise)
        try:
            model = C.load_body_model(loaders.model_path(node, "body_model", body_model))
        except C.Cari4DError as exc:
            raise NodeInputError(node, "body_model", str(exc)) from None
        path = node_io.media_file(node, "tracks", tracks)
        with np.load(path, allow_pickle=False) as data:
            need = ("pose", "betas", "transl", "obj_rot", "obj_transl", "obj_points", "contacts")
            missing = [k for k in need if k not in data.files]
            if missing:
                raise NodeInputError(node, "tracks", f"{path} lacks {missing}")
            t = {k: torch.from_numpy(np.asarray(data[k])) for k in need}
        track = C.Track(t["pose"].float(), t["betas"].float(), t["transl"].float(), t["obj_rot"].float(),
                        t["obj_transl"].float(), t["obj_points"].float(), t["contacts"].bool())
        result = C.optimise(model, track, iters=int(iterations), w_contact=float(contact_weight),
                            w_smooth=float(smooth_weight))
        out, _ = node_io.output_file(node, filename_prefix, "npz")
        C.save_motion_asset(out, result, track, float(fps))
        with open(os.path.splitext(out)[0] + ".json") as f:
            return out, f.read()


# Performance from audio lives in its own module (this file stays under ~600 lines); registered below.
from .talking_head_node import VBTalkingHead  # noqa: E402


NODE_CLASS_MAPPINGS = {
    "VBTalkingHead": VBTalkingHead,
    "VBCari4DContactOptimise": VBCari4DContactOptimise,
    "VBPerformanceCheck": VBPerformanceCheck,
    "VBSamplePortrait": VBSamplePortrait,
    "VBActorCard": VBActorCard,
    "VBActorLoraTrain": VBActorLoraTrain,
    "VBElevenLabsSpeech": VBElevenLabsSpeech,
    "VBFlashPortrait": VBFlashPortrait,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "VBTalkingHead": "Talking Head from Audio (InfiniteTalk) (VibeBoard)",
    "VBCari4DContactOptimise": "CARI4D Contact Optimise (VibeBoard)",
    "VBPerformanceCheck": "Performance Check → Dailies (VibeBoard)",
    "VBSamplePortrait": "Sample Portrait (VibeBoard)",
    "VBActorCard": "Actor Card (VibeBoard)",
    "VBActorLoraTrain": "Actor LoRA Train (VibeBoard)",
    "VBElevenLabsSpeech": "ElevenLabs Speech (VibeBoard)",
    "VBFlashPortrait": "FlashPortrait (VibeBoard)",
}
