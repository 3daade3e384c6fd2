"""Wan text encoding caches prompt embeddings by text: the same prompts again skip the UMT5 pass."""
import torch

from vibeboard.models import tiny
from vibeboard.models.vram import VramManager
from vibeboard.wan import conditioning as C
from vibeboard.wan.handle import load_wan


def test_same_prompts_reuse_embeddings_and_new_prompts_encode(tmp_path):
    paths = tiny.write_comfy_layout(str(tmp_path), kinds=("t2v",))
    handle = load_wan(paths["t2v"], paths["vae"], paths["umt5"], paths["tokenizer"],
                      manager=VramManager(device="cpu"))
    calls = []
    C._TEXT_CACHE.clear()
    handle.module("text_encoder").register_forward_hook(lambda m, args, out: calls.append(args[0].shape))
    first = C.encode_text(handle, ["a red car", "blurry"])
    again = C.encode_text(handle, ["a  red car ", "blurry"])    # same text after whitespace clean-up
    assert len(calls) == 1 and torch.equal(first, again)
    again.zero_()                                               # callers own their copy
    assert torch.equal(C.encode_text(handle, ["a red car", "blurry"]), first)
    other = C.encode_text(handle, ["a blue boat", "blurry"])
    assert len(calls) == 2 and not torch.equal(other[0], first[0])
