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


def test_text_encoder_kernels_are_warmed_up_while_loading_and_encode_waits_for_it(tmp_path, monkeypatch):
    # On a GPU the first UMT5 forward of a process pays one-off CUDA set-up; while the files are read, the loader
    # runs a one-block stand-in with the file's shapes, and the first real encode waits for that thread.
    import threading
    import time

    from transformers import UMT5EncoderModel

    from vibeboard.wan import handle as H
    monkeypatch.setattr(H, "WARM_UP_DEVICES", ("cpu",))
    real_warm_up, order, forwards = H._warm_up_text_encoder, [], []
    real_forward = UMT5EncoderModel.forward

    def spy_forward(self, input_ids=None, attention_mask=None, **kw):
        forwards.append((self.config.num_layers, self.config.d_model, tuple(input_ids.shape),
                         torch.is_inference_mode_enabled(), threading.current_thread().name))
        return real_forward(self, input_ids=input_ids, attention_mask=attention_mask, **kw)

    def slow_warm_up(path, device, dtype):
        time.sleep(0.3)
        real_warm_up(path, device, dtype)
        order.append("warm-up done")

    monkeypatch.setattr(UMT5EncoderModel, "forward", spy_forward)
    monkeypatch.setattr(H, "_warm_up_text_encoder", slow_warm_up)
    paths = tiny.write_comfy_layout(str(tmp_path), kinds=("t2v",))
    handle = load_wan(paths["t2v"], paths["vae"], paths["umt5"], paths["tokenizer"],
                      manager=VramManager(device="cpu"))
    C._TEXT_CACHE.clear()
    C.encode_text(handle, ["a red car"])
    order.append("encoded")
    assert order == ["warm-up done", "encoded"]
    real = handle.module("text_encoder").config
    stand_in, first_real = forwards
    assert stand_in == (1, real.d_model, (1, 512), True, "vibeboard-umt5-warm-up")   # one block, real widths
    assert first_real[0] == real.num_layers and first_real[2] == (1, 512)
    # loaded again (cached): no second warm-up
    load_wan(paths["t2v"], paths["vae"], paths["umt5"], paths["tokenizer"], manager=handle.manager)
    assert order == ["warm-up done", "encoded"] and not H._warm


def test_umt5_config_from_the_file_header_matches_the_loaded_model(tmp_path):
    from vibeboard.models import loaders
    paths = tiny.write_comfy_layout(str(tmp_path), kinds=("t2v",))
    header = loaders.umt5_file_config(paths["umt5"])
    loaded = loaders.load_umt5(paths["umt5"]).config
    for name in ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads",
                 "relative_attention_num_buckets", "relative_attention_max_distance"):
        assert getattr(header, name) == getattr(loaded, name), name


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
