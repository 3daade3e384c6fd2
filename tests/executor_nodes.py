"""Small node classes used by the executor tests (counting calls so caching is observable)."""
import torch

from vibeboard.common import runtime

CALLS = []


class Constant:
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 1, "min": -100, "max": 100})}}

    def run(self, value):
        CALLS.append(("Constant", value))
        return (value,)


class Add:
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"a": ("INT", {"default": 0}), "b": ("INT", {"default": 0})}}

    def run(self, a, b):
        CALLS.append(("Add", a, b))
        return (a + b,)


class Record:
    """Output node: stores what it got in its ui."""
    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("*", {})}}

    def run(self, value):
        CALLS.append(("Record", value))
        return {"ui": {"text": [repr(value)]}}


class MakeList:
    RETURN_TYPES = ("INT",)
    OUTPUT_IS_LIST = (True,)
    FUNCTION = "run"
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"count": ("INT", {"default": 3, "min": 0, "max": 10})}}

    def run(self, count):
        CALLS.append(("MakeList", count))
        return (list(range(count)),)


class SumList:
    RETURN_TYPES = ("INT",)
    INPUT_IS_LIST = True
    FUNCTION = "run"
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"values": ("INT", {})}}

    def run(self, values):
        CALLS.append(("SumList", list(values)))
        return (sum(values),)


class Switch:
    """Lazy: only evaluates the branch it picks."""
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"use_a": ("BOOLEAN", {"default": True}),
                             "a": ("INT", {"lazy": True}), "b": ("INT", {"lazy": True})}}

    def check_lazy_status(self, use_a, a=None, b=None):
        return ["a"] if use_a else ["b"]

    def run(self, use_a, a=None, b=None):
        CALLS.append(("Switch", use_a, a, b))
        return (a if use_a else b,)


class LazyNoCheck:
    """Lazy inputs and no check_lazy_status: nothing requests them (ComfyUI passes None)."""
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"a": ("INT", {"lazy": True})}}

    def run(self, a=None):
        CALLS.append(("LazyNoCheck", a))
        return (-1 if a is None else a,)


class Slow:
    """Reports progress and checks for interrupt, like a sampler."""
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "test"
    started = None  # threading.Event set by tests

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"steps": ("INT", {"default": 5, "min": 1, "max": 1000})}}

    def run(self, steps):
        import time
        bar = runtime.progress_bar(steps)
        for _ in range(steps):
            if Slow.started is not None:
                Slow.started.set()
            time.sleep(0.01)
            bar.update(1)
        CALLS.append(("Slow", steps))
        return (steps,)


class Fail:
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 0})}}

    def run(self, value):
        raise ValueError("boom: value was %d" % value)


class Choice:
    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"mode": (["near", "far"], {"default": "near"}),
                             "seed": ("INT", {"default": 0, "min": 0, "max": 2**32}),
                             "strength": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0})},
                "optional": {"image": ("IMAGE",)}}

    def run(self, mode, seed, strength, image=None):
        return (f"{mode}:{seed}:{strength}",)


class MakeImage:
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"size": ("INT", {"default": 8, "min": 1, "max": 64})}}

    def run(self, size):
        return (torch.rand(1, size, size, 3, generator=torch.Generator().manual_seed(0)),)


class Validated:
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 0})}}

    @classmethod
    def VALIDATE_INPUTS(cls, value):
        return True if value % 2 == 0 else f"value must be even, got {value}"

    def run(self, value):
        return (value,)


class AlwaysChanged(Constant):
    @classmethod
    def IS_CHANGED(cls, value):
        return float("nan")


class ReserveThenFail(Record):
    """Reserves an output name (as every save node does) and fails before writing it: a full disk."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"prefix": ("STRING", {"default": "broken/shot"})}}

    def run(self, prefix):
        import errno
        runtime.unique_output_path(runtime.output_directory(), prefix, "png")
        raise OSError(errno.ENOSPC, "No space left on device")


ALL = {name: cls for name, cls in globals().items()
       if isinstance(cls, type) and hasattr(cls, "FUNCTION")}


def registry():
    from vibeboard_runner.registry import NodeRegistry
    return NodeRegistry(ALL)
