"""StoryMem nodes: the persistent memory bank (VB_STORY_MEMORY), keyframe update, LoRA, memory-conditioned shot."""
from __future__ import annotations

import os

import torch

from ..common import runtime
from . import keyframes, storymem
from ..wan.nodes import video_size_inputs
from .memory_bank import MemoryEntry, MemoryFileError, StoryMemoryBank
from .node_utils import (CATEGORY, blank_images, data_dir, hf_folders, lora_names, model_folder, mtime,
                         save_to_folder)

MEMORY_TIP = "Story memory bank (keyframes of earlier shots)"


class VBStoryMemoryLoad:
    DESCRIPTION = ("Opens a StoryMem memory bank folder (manifest.json + safetensors), or starts an empty one there, so "
                   "shot N+1 in a later run remembers shots 1..N. Reference images seed an empty bank (StoryMem MR2V).")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("VB_STORY_MEMORY", "IMAGE", "INT")
    RETURN_NAMES = ("memory", "keyframes", "count")
    OUTPUT_TOOLTIPS = ("the memory bank", "its keyframes", "number of keyframes")
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "memory_dir": ("STRING", {"default": "stories/my_film/memory",
                                      "tooltip": "Folder of the bank: absolute or relative to the output folder"}),
            "max_size": ("INT", {"default": 8, "min": 1, "max": 32,
                                 "tooltip": "Most keyframes kept (StoryMem: 8 in code, 10 in the README)"}),
            "keep_first": ("INT", {"default": 3, "min": 0, "max": 32,
                                   "tooltip": "Earliest keyframes always kept (the rest is the most recent)"}),
            "create_if_missing": ("BOOLEAN", {"default": True, "tooltip": "Start an empty bank when none exists"}),
        }, "optional": {
            "reference_images": ("IMAGE", {"tooltip": "Characters/sets to remember from the start (added when the "
                                                      "bank is empty)"}),
        }}

    @classmethod
    def IS_CHANGED(cls, memory_dir, **kwargs):
        try:
            return mtime(os.path.join(data_dir(runtime.node_label(VBStoryMemoryLoad), "memory_dir",
                                               memory_dir), "manifest.json"))
        except Exception:
            return 0.0

    def load(self, memory_dir, max_size, keep_first, create_if_missing, reference_images=None):
        node = runtime.node_label(VBStoryMemoryLoad)
        folder = data_dir(node, "memory_dir", memory_dir)
        if os.path.lexists(os.path.join(folder, "manifest.json")):
            try:
                bank = StoryMemoryBank.load(folder)
            except (MemoryFileError, FileNotFoundError) as exc:
                raise runtime.NodeInputError(node, "memory_dir", str(exc)) from None
            bank.max_size, bank.keep_first = int(max_size), int(keep_first)
        elif create_if_missing:
            bank = StoryMemoryBank(max_size=int(max_size), keep_first=int(keep_first), path=folder,
                                   story_id=os.path.basename(os.path.dirname(folder.rstrip(os.sep))))
        else:
            raise runtime.NodeInputError(node, "memory_dir", f"no memory bank at {folder} (manifest.json missing)")
        if reference_images is not None and len(bank) == 0:
            for i, img in enumerate(reference_images):
                bank.add(MemoryEntry(image=img, shot=0, frame=i, source="reference"), dedup=False)
        bank.apply_policy()
        return (bank, bank.images() if len(bank) else blank_images(), len(bank))


class VBStoryMemoryUpdate:
    DESCRIPTION = ("Picks keyframes from a generated shot (CLIP image similarity to the last keyframe below the "
                   "threshold, optional quality gate), drops near-duplicates of the bank, applies the bank policy "
                   "(first few + most recent) and saves the bank to its folder. Needs weights: a CLIP folder "
                   "under models/clip.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("VB_STORY_MEMORY", "IMAGE")
    RETURN_NAMES = ("memory", "keyframes")
    OUTPUT_TOOLTIPS = ("the updated bank (saved to its folder)", "the bank's keyframes after the update")
    FUNCTION = "update"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "memory": ("VB_STORY_MEMORY", {"tooltip": MEMORY_TIP}),
            "shot_frames": ("IMAGE", {"tooltip": "Decoded frames of the shot just generated"}),
            "clip_model": (hf_folders("clip") or ["clip-vit-base-patch32"],
                           {"tooltip": "CLIP folder in models/clip (StoryMem uses ViT-B/32)"}),
            "threshold": ("FLOAT", {"default": 0.9, "min": 0.0, "max": 1.0, "step": 0.005,
                                    "tooltip": "A frame becomes a keyframe when its CLIP similarity to the last "
                                               "keyframe drops below this"}),
            "max_keyframes": ("INT", {"default": 3, "min": 1, "max": 16,
                                      "tooltip": "Per shot; the threshold is lowered by 0.01 until it fits"}),
        }, "optional": {
            "shot": ("INT", {"default": 0, "min": 0, "max": 100000, "tooltip": "Shot number (0 = next in the bank)"}),
            "prompt": ("STRING", {"default": "", "multiline": True, "tooltip": "Shot prompt, kept with its keyframes"}),
            "stride": ("INT", {"default": 1, "min": 1, "max": 64, "tooltip": "Look at every n-th frame"}),
            "quality_gate": (["none", "sharpness"], {"default": "none",
                                                      "tooltip": "Skip frames scoring below min_score"}),
            "min_score": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1e6, "step": 0.1,
                                    "tooltip": "Quality gate threshold"}),
            "dedup_threshold": ("FLOAT", {"default": 0.9, "min": 0.0, "max": 1.0, "step": 0.005,
                                          "tooltip": "Drop a keyframe more similar than this to a bank entry"}),
            "save": ("BOOLEAN", {"default": True, "tooltip": "Write the bank to its folder"}),
        }}

    def update(self, memory, shot_frames, clip_model, threshold, max_keyframes, shot=0, prompt="", stride=1,
               quality_gate="none", min_score=0.0, dedup_threshold=0.9, save=True):
        node = runtime.node_label(VBStoryMemoryUpdate)
        folder = model_folder(node, "clip_model", clip_model, "clip")
        try:
            embed = keyframes.ClipImageEmbedder(folder, device=_device())
        except (FileNotFoundError, OSError) as exc:
            raise runtime.NodeInputError(node, "clip_model", str(exc)) from None
        bank = memory.copy()
        bank.dedup_threshold = float(dedup_threshold)
        scorer = keyframes.sharpness_score if quality_gate == "sharpness" else None
        new, _, kept = keyframes.update_memory(bank, shot_frames, embed, shot=shot or None, prompt=prompt,
                                               threshold=threshold, max_keyframes=max_keyframes, scorer=scorer,
                                               min_score=min_score, stride=stride)
        if save and new.path:
            try:
                new.save(new.path)
            except (MemoryFileError, OSError) as exc:
                raise runtime.NodeInputError(node, "memory", f"cannot save the bank to {new.path}: {exc}") from None
        picked = shot_frames[kept] if kept else blank_images(1, shot_frames.shape[1], shot_frames.shape[2])
        return (new, picked)


class VBStoryMemorySave:
    DESCRIPTION = "Saves the memory bank (manifest.json + safetensors, atomic) to its folder or another one."
    CATEGORY = CATEGORY
    RETURN_TYPES = ()
    FUNCTION = "save"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"memory": ("VB_STORY_MEMORY", {"tooltip": MEMORY_TIP})},
                "optional": {"memory_dir": ("STRING", {"default": "", "tooltip": "Empty = the bank's own folder"})}}

    def save(self, memory, memory_dir=""):
        return save_to_folder(memory, runtime.node_label(VBStoryMemorySave), "memory_dir", memory_dir, "manifest.json")


class VBStoryMemLoRA:
    DESCRIPTION = ("Adds the StoryMem LoRA (Kevin-thu/StoryMem, PEFT rank 128, rsLoRA, on self/cross attention "
                   "q/k/v/o and ffn.0/ffn.2) to both Wan2.2-I2V-A14B experts. Non-commercial licence (S-Lab 1.0). "
                   "Needs weights: storymem-lora (vibeboard models pull storymem-lora) and Wan2.2-I2V-A14B.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("VB_WAN",)
    RETURN_NAMES = ("wan",)
    OUTPUT_TOOLTIPS = ("a copy of the Wan model with the StoryMem LoRA on both experts",)
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        names = lora_names() or ["none"]
        return {"required": {
            "wan": ("VB_WAN", {"tooltip": "Wan2.2-I2V-A14B (both experts)"}),
            "high_noise_lora": (names, {"tooltip": "LoRA for the high-noise expert (models/loras/StoryMem/…)"}),
            "low_noise_lora": (names, {"tooltip": "LoRA for the low-noise expert"}),
            "strength": ("FLOAT", {"default": 1.0, "min": -2.0, "max": 4.0, "step": 0.05, "tooltip": "LoRA strength"}),
        }, "optional": {
            "alpha": ("FLOAT", {"default": 128.0, "min": 1.0, "max": 1024.0,
                                "tooltip": "LoRA alpha when the file does not store it (StoryMem: 128)"}),
            "rslora": ("BOOLEAN", {"default": True, "tooltip": "Scale alpha/sqrt(rank) (StoryMem trains with rsLoRA)"}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, high_noise_lora, low_noise_lora):
        # a clear missing-file message (with the pull command) instead of ComfyUI's generic "Value not in list"
        from ..models import preflight
        for input_name, value in (("high_noise_lora", high_noise_lora), ("low_noise_lora", low_noise_lora)):
            verdict = preflight.validate_model_name("VBStoryMemLoRA", input_name, value)
            if verdict is not True:
                return verdict
        return True

    def apply(self, wan, high_noise_lora, low_noise_lora, strength, alpha=128.0, rslora=True):
        from ..models import lora as lora_mod
        node = runtime.node_label(VBStoryMemLoRA)
        new = wan.with_parts()
        pairs = [("high_noise_lora", high_noise_lora, "transformer")]
        if wan.has("transformer_2"):
            pairs.append(("low_noise_lora", low_noise_lora, "transformer_2"))
        for input_name, name, part in pairs:
            path = model_folder(node, input_name, name, "loras")
            try:
                groups = lora_mod.read_lora(path, alpha=alpha, rslora=rslora)
                lora_mod.resolve(wan.module(part), groups, strict=True)
            except ValueError as exc:
                raise runtime.NodeInputError(node, input_name, str(exc)) from None
            new.loras.append((groups, float(strength), part))
        return (new,)


class VBStoryMemShot:
    DESCRIPTION = ("Generates one shot remembering the bank: memory keyframes are VAE-encoded one latent frame "
                   "each and placed before the shot's frames through Wan I2V channel conditioning, at negative "
                   "RoPE positions (-M·S … -S). Optional first frame (MI2V) or 5 motion frames (MM2V). Outputs "
                   "the shot's frames only. Needs weights: Wan2.2-I2V-A14B with the StoryMem LoRA.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("LATENT", "IMAGE")
    RETURN_NAMES = ("latent", "memory_used")
    OUTPUT_TOOLTIPS = ("Wan latents of the shot's own frames", "the memory keyframes the shot was conditioned on")
    FUNCTION = "generate"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "wan": ("VB_WAN", {"tooltip": "Wan I2V model (Wan2.2-I2V-A14B + StoryMem LoRA)"}),
            "text": ("VB_WAN_TEXT", {"tooltip": "Encoded shot prompt"}),
            "memory": ("VB_STORY_MEMORY", {"tooltip": MEMORY_TIP}),
            **video_size_inputs(),
        }, "optional": {
            "sampler": ("VB_WAN_SAMPLER", {"tooltip": "Sampler settings (unwired: StoryMem's own 40 UniPC steps, "
                                                      "CFG 3.5, shift 4.0)"}),
            "first_frame": ("IMAGE", {"tooltip": "MI2V: the previous shot's last frame (continuous cut)"}),
            "motion_frames": ("IMAGE", {"tooltip": "MM2V: the previous shot's last 5 frames"}),
            "rope_gap": ("INT", {"default": 5, "min": 0, "max": 256,
                                 "tooltip": "S in the negative RoPE shift (0 = contiguous, the pre-fix release)"}),
            "memory_mode": (list(storymem.MEMORY_MODES), {
                "default": "free", "tooltip": "Memory frames of the noisy latent: free = as upstream (noised, "
                                              "sampled with the shot, then dropped); fixed = held clean every step; "
                                              "renoise = held at the step's noise level. y always carries the clean "
                                              "memory"}),
        }}

    def generate(self, wan, text, memory, width, height, length, sampler=None, first_frame=None, motion_frames=None,
                 rope_gap=5, memory_mode="free"):
        from ..wan import conditioning as C
        from ..wan import sampler as S
        node = runtime.node_label(VBStoryMemShot)
        C.check_size(node, length, height, width, wan)
        dit = wan.module("transformer")
        if dit.config.in_channels != 36:
            raise runtime.NodeInputError(node, "wan", "StoryMem needs a Wan I2V model (36 input channels: "
                                         "Wan2.2-I2V-A14B); this one has " f"{dit.config.in_channels}")
        if first_frame is not None and motion_frames is not None:
            raise runtime.NodeInputError(node, "motion_frames", "give first_frame (MI2V) or motion_frames (MM2V)")
        settings = S.settings_or_default(wan, sampler, **storymem.DEFAULTS)
        mem = storymem.encode_memory(wan, memory, height, width)
        u, given = storymem.shot_condition(wan, length, height, width, first_frame, motion_frames)
        clip_src = first_frame if first_frame is not None else (
            motion_frames[-1:] if motion_frames is not None else (memory.images()[:1] if len(memory) else None))
        img_emb = None
        if getattr(dit.config, "image_dim", None):
            if clip_src is None or not wan.has("image_encoder"):
                raise runtime.NodeInputError(node, "wan", "this I2V model needs CLIP vision image tokens: load "
                                             "clip_vision and give a first frame, motion frames or memory")
            img_emb = C.clip_image_tokens(wan, clip_src[:1])
        cond = storymem.conditioning(text["prompt_embeds"], text.get("negative_embeds"), mem, u, length, given,
                                     rope_gap, memory_mode, img_emb)
        raw = storymem.generate_latents(wan, cond, settings, C.latent_shape(wan, length, height, width))
        used = memory.images(height, width) if len(memory) else blank_images(1, height, width)
        return ({"samples": raw}, used)


class VBShotTailFrames:
    DESCRIPTION = ("The end of a shot for the next one: its last frame (StoryMem MI2V, a continuous cut) and its last "
                   "5 frames (MM2V, motion carried over).")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "IMAGE")
    RETURN_NAMES = ("last_frame", "motion_frames")
    OUTPUT_TOOLTIPS = ("the shot's last frame (MI2V)", "the shot's last 5 frames (MM2V)")
    FUNCTION = "tail"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"shot_frames": ("IMAGE", {"tooltip": "Decoded frames of a shot"})}}

    def tail(self, shot_frames):
        return (shot_frames[-1:], shot_frames[-storymem.MOTION_FRAMES:])


def _device():
    return "cuda" if torch.cuda.is_available() else "cpu"


NODE_CLASS_MAPPINGS = {
    "VBStoryMemoryLoad": VBStoryMemoryLoad,
    "VBStoryMemoryUpdate": VBStoryMemoryUpdate,
    "VBStoryMemorySave": VBStoryMemorySave,
    "VBStoryMemLoRA": VBStoryMemLoRA,
    "VBStoryMemShot": VBStoryMemShot,
    "VBShotTailFrames": VBShotTailFrames,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "VBStoryMemoryLoad": "Story Memory Load (VibeBoard)",
    "VBStoryMemoryUpdate": "Story Memory Update — Keyframes (VibeBoard)",
    "VBStoryMemorySave": "Story Memory Save (VibeBoard)",
    "VBStoryMemLoRA": "StoryMem LoRA (VibeBoard)",
    "VBStoryMemShot": "StoryMem Shot (VibeBoard)",
    "VBShotTailFrames": "Shot Tail Frames — MI2V/MM2V (VibeBoard)",
}
