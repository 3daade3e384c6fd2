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


def test_text_encoder_is_warmed_up_while_loading_and_encode_waits_for_it(tmp_path, monkeypatch):
    # On a GPU the first UMT5 forward of a process pays one-off CUDA set-up; the loader runs it on a dummy prompt
    # (Wan's padded length) in a thread and the first real encode waits for that thread instead of racing it.
    import threading
    import time

    from vibeboard.wan import handle as H
    monkeypatch.setattr(H, "WARM_UP_DEVICES", ("cpu",))
    real_warm_up, order = H._warm_up_text_encoder, []

    def slow_warm_up(manager, key, tokenizer):
        time.sleep(0.3)
        real_warm_up(manager, key, tokenizer)
        order.append(("warm-up done", threading.current_thread().name))

    monkeypatch.setattr(H, "_warm_up_text_encoder", slow_warm_up)
    paths = tiny.write_comfy_layout(str(tmp_path), kinds=("t2v",))
    manager = VramManager(device="cpu")
    encoder_key = H._key("text_encoder", paths["umt5"], "bf16")
    calls = []

    def on_register(name, module, **kw):
        if name == encoder_key:
            module.register_forward_hook(lambda m, args, out: calls.append(
                (tuple(args[0].shape), torch.is_inference_mode_enabled())))
        return VramManager.register(manager, name, module, **kw)

    monkeypatch.setattr(manager, "register", on_register)
    handle = load_wan(paths["t2v"], paths["vae"], paths["umt5"], paths["tokenizer"], manager=manager)
    C._TEXT_CACHE.clear()
    C.encode_text(handle, ["a red car"])
    order.append(("encoded", threading.current_thread().name))
    assert [o[0] for o in order] == ["warm-up done", "encoded"]
    assert order[0][1] == "vibeboard-umt5-warm-up"
    assert calls == [((1, 512), True), ((1, 512), False)]    # the warm-up ran the real shapes, without autograd


def test_parts_load_concurrently_and_a_failing_part_is_reported_after_the_others(tmp_path):
    from vibeboard.wan import handle as H
    paths = tiny.write_comfy_layout(str(tmp_path), kinds=("t2v",))
    manager = VramManager(device="cpu")
    missing = str(tmp_path / "nope.safetensors")
    try:
        load_wan(paths["t2v"], missing, paths["umt5"], paths["tokenizer"], manager=manager)
    except Exception as exc:  # noqa: BLE001 - whichever error the VAE loader raises for a missing file
        assert "nope.safetensors" in str(exc)
    else:
        raise AssertionError("a missing VAE file must fail the load")
    # the parts that exist were loaded (and are reused by the next load, not read again)
    assert H._key("transformer", paths["t2v"], "bf16") in manager.models
    assert H._key("text_encoder", paths["umt5"], "bf16") in manager.models
