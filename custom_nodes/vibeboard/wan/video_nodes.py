"""Wan Decode to Video MP4: decode and H.264-encode in one node, each decoded time chunk encoded while the VAE decodes
the next (`vae_fast.decode_to_video`). Registered through `wan/nodes.py`."""
from __future__ import annotations

from ..common import runtime

CATEGORY = "VibeBoard/Wan"


class VBWanDecodeVideo:
    DESCRIPTION = ("Decodes Wan latents and writes them as an H.264 MP4 in one step: the frames of each decoded "
                   "time chunk are encoded while the VAE decodes the next one (faster than VAE Decode followed "
                   "by Save Video). Also returns the frames as IMAGE. Needs weights: the Wan VAE from Wan Model "
                   "Loader.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "STRING")
    RETURN_NAMES = ("images", "path")
    OUTPUT_TOOLTIPS = ("the decoded frames, one IMAGE per frame, float 0..1",
                       "path of the written MP4, relative to the output folder")
    OUTPUT_NODE = True
    FUNCTION = "decode_save"

    @classmethod
    def INPUT_TYPES(cls):
        from ..media import video as video_io
        return {"required": {
            "wan": ("VB_WAN", {"tooltip": "Wan model (its VAE is used)"}),
            "latent": ("LATENT", {"tooltip": "Raw Wan latents [1,16,T,h,w]"}),
            "fps": ("FLOAT", {"default": 16.0, "min": 0.01, "max": 1000.0, "step": 0.001,
                              "tooltip": "frames per second (Wan 2.1: 16)"}),
            "filename_prefix": ("STRING", {"default": "vibeboard/wan", "tooltip": "name prefix in the output "
                                                                                  "folder; a counter is appended"}),
            "crf": ("INT", {"default": 19, "min": 0, "max": 51, "tooltip": "quality: 17-23 typical, 51 worst"}),
            "preset": (list(video_io.PRESETS), {"default": "medium", "tooltip": "x264 speed/size trade-off"}),
        }, "optional": {"audio": ("AUDIO", {"tooltip": "muxed as AAC, cut or padded to the video length"})},
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    def decode_save(self, wan, latent, fps=16.0, filename_prefix="vibeboard/wan", crf=19, preset="medium",
                    audio=None, prompt=None, extra_pnginfo=None):
        from ..media import nodes as media_nodes
        from . import vae_fast
        node = runtime.node_label(VBWanDecodeVideo)
        samples = latent["samples"]
        if samples.ndim != 5 or samples.shape[0] != 1 or samples.shape[1] != wan.latent_channels:
            raise runtime.NodeInputError(node, "latent", f"expected one clip [1,{wan.latent_channels},T,h,w], "
                                         f"got {tuple(samples.shape)}")
        fps = media_nodes._check_fps(fps, node)
        track = media_nodes._audio_or_none(audio, node)
        directory = runtime.output_directory()
        path = media_nodes._reserve(directory, filename_prefix, "mp4", node)
        total = 1 + (samples.shape[2] - 1) * wan.scale_temporal
        bar = runtime.progress_bar(total)
        with wan.use("vae") as vae:
            z = samples.to(wan.device, next(vae.parameters()).dtype)
            _, images = vae_fast.decode_to_video(
                vae, z, path, fps, crf=int(crf), preset=preset, audio=track,
                metadata=media_nodes.recipe_metadata(prompt, extra_pnginfo),
                on_chunk=lambda done: bar.update_absolute(done, total))
        return {"ui": {"images": [media_nodes._video_entry(path, directory, "output")], "animated": [True]},
                "result": (images, path)}


NODE_CLASS_MAPPINGS = {"VBWanDecodeVideo": VBWanDecodeVideo}
NODE_DISPLAY_NAME_MAPPINGS = {"VBWanDecodeVideo": "Wan Decode to Video MP4 (VibeBoard)"}
