"""Tiny node classes for the render-farm tests (loaded by `vibeboard worker --extra-nodes`).

FarmModelRun "loads" a named model through the worker's resident-model set (so the farm's affinity routing
and the number of loads can be checked) and works in steps with progress; FarmOOM fails like a GPU out of
memory; both leave a marker file per call so tests can count how often a node really ran.
"""
import os
import time

from vibeboard.common import runtime


def _mark(folder, name):
    if folder:
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"{name}-{os.getpid()}-{time.monotonic_ns()}"), "w") as handle:
            handle.write(str(os.getpid()))


class FarmModelRun:
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 0}), "model_name": ("STRING", {"default": "m1"}),
                             "seconds": ("FLOAT", {"default": 0.05, "min": 0}),
                             "marker_dir": ("STRING", {"default": ""})}}

    @classmethod
    def IS_CHANGED(cls, **kwargs):
        return float("nan")

    def run(self, value, model_name, seconds, marker_dir):
        from vibeboard_runner.farm.resident import models
        models().ensure(model_name, lambda: {"name": model_name, "weights": [0.0] * 16})
        _mark(marker_dir, "run")
        bar = runtime.progress_bar(10)
        for _ in range(10):
            runtime.check_interrupt()
            time.sleep(seconds / 10)
            bar.update(1)
        return (value,)


class FarmOOM:
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 0}), "marker_dir": ("STRING", {"default": ""})}}

    @classmethod
    def IS_CHANGED(cls, **kwargs):
        return float("nan")

    def run(self, value, marker_dir):
        import torch
        _mark(marker_dir, "oom")
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


NODE_CLASS_MAPPINGS = {"FarmModelRun": FarmModelRun, "FarmOOM": FarmOOM}


def job(value, model, seconds=0.05, marker_dir="", prefix="farm/out", oom=False, fail=False):
    """const → model run (→ OOM | fail) → save, as an API prompt."""
    prompt = {"1": {"class_type": "SvcConst", "inputs": {"value": value}},
              "2": {"class_type": "FarmModelRun", "inputs": {"value": ["1", 0], "model_name": model,
                                                            "seconds": seconds, "marker_dir": marker_dir}}}
    source = ["2", 0]
    if oom:
        prompt["3"] = {"class_type": "FarmOOM", "inputs": {"value": source, "marker_dir": marker_dir}}
        source = ["3", 0]
    if fail:
        prompt["4"] = {"class_type": "SvcFail", "inputs": {"value": source}}
        source = ["4", 0]
    prompt["9"] = {"class_type": "SvcSave", "inputs": {"value": source, "kind": "png", "size_kb": 1,
                                                       "filename_prefix": prefix}}
    return prompt
