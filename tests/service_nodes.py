"""Tiny node classes for the service tests (registered with `--extra-nodes` or `registry.register`).

They write real files of every output kind (PNG, MP4, WAV, JSON, raw bytes) so the storage push is tested
on genuine content, and one of them sleeps in small steps with progress + interrupt checks.
"""
import json
import os
import time

from vibeboard.common import runtime


class SvcConst:
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 1, "min": -1000, "max": 1000})}}

    def run(self, value):
        return (value,)


class SvcSlow:
    """Sleeps `seconds` in 10 steps (progress each step); returns value."""
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 0}), "seconds": ("FLOAT", {"default": 0.1, "min": 0})}}

    @classmethod
    def IS_CHANGED(cls, **kwargs):
        return float("nan")

    def run(self, value, seconds):
        bar = runtime.progress_bar(10)
        for _ in range(10):
            time.sleep(seconds / 10)
            bar.update(1)
        return (value,)


class SvcQuiet(SvcSlow):
    """Sleeps `seconds` without any progress event (a node that looks stuck to the health check)."""

    def run(self, value, seconds):
        time.sleep(seconds)
        return (value,)


class SvcFail:
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 0})}}

    def run(self, value):
        raise ValueError(f"SvcFail refuses value {value}")


def _write_png(path, value):
    from PIL import Image
    Image.new("RGB", (8, 8), (value % 256, 40, 200)).save(path)


def _write_mp4(path, value):
    import av
    import numpy as np
    with av.open(path, "w") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(4):
            frame = np.full((32, 32, 3), (value * 7 + i * 30) % 256, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _write_wav(path, value):
    import wave
    with wave.open(path, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(8000)
        handle.writeframes(bytes(1600))


class SvcSave:
    """Output node: writes one file of `kind` (png|mp4|wav|json|bin) into the output folder."""
    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 0}),
                             "kind": (["png", "mp4", "wav", "json", "bin"], {"default": "png"}),
                             "size_kb": ("INT", {"default": 1, "min": 0, "max": 1 << 20}),
                             "filename_prefix": ("STRING", {"default": "svc/out"})}}

    @classmethod
    def IS_CHANGED(cls, **kwargs):
        return float("nan")

    def run(self, value, kind, size_kb, filename_prefix):
        out_dir = runtime.output_directory()
        path, subfolder, name = runtime.unique_output_path(out_dir, filename_prefix, kind)
        if kind == "png":
            _write_png(path, value)
        elif kind == "mp4":
            _write_mp4(path, value)
        elif kind == "wav":
            _write_wav(path, value)
        elif kind == "json":
            with open(path, "w") as handle:
                json.dump({"value": value}, handle)
        else:
            with open(path, "wb") as handle:
                handle.write(os.urandom(size_kb * 1024))
        item = {"filename": name, "subfolder": subfolder, "type": "output"}
        key = {"png": "images", "mp4": "images", "wav": "audio"}.get(kind, "files")
        ui = {key: [item]}
        if kind == "mp4":
            ui["animated"] = [True]
        return {"ui": ui}


NODE_CLASS_MAPPINGS = {"SvcConst": SvcConst, "SvcSlow": SvcSlow, "SvcFail": SvcFail, "SvcSave": SvcSave,
                       "SvcQuiet": SvcQuiet}
NODE_DISPLAY_NAME_MAPPINGS = {k: k for k in NODE_CLASS_MAPPINGS}


def workflow(value=1, kind="png", seconds=0.0, fail=False, size_kb=1, prefix="svc/out", quiet=False):
    """const → (slow, or quiet: no progress events) → (fail) → save."""
    prompt = {"1": {"class_type": "SvcConst", "inputs": {"value": value}}}
    source = ["1", 0]
    if seconds:
        prompt["2"] = {"class_type": "SvcQuiet" if quiet else "SvcSlow", "inputs": {"value": source,
                                                                                    "seconds": seconds}}
        source = ["2", 0]
    if fail:
        prompt["3"] = {"class_type": "SvcFail", "inputs": {"value": source}}
        source = ["3", 0]
    prompt["9"] = {"class_type": "SvcSave", "inputs": {"value": source, "kind": kind, "size_kb": size_kb,
                                                       "filename_prefix": prefix}}
    return prompt
