"""The actor-LoRA trainer encodes captions and images through the Wan runtime (one text-encode path): the same
prompt cleaning, tokenizer and prompt cache as every Wan node, the same latent normalisation."""
import torch

from vibeboard.common import runtime
from vibeboard.models import tiny, vram
from vibeboard.wan import conditioning as C


def test_trainer_captions_use_the_runtime_text_encoder_and_its_cache(tmp_path, monkeypatch):
    from vibeboard.foundry.nodes import _wan_encoders
    paths = tiny.write_comfy_layout(str(tmp_path / "models"), kinds=("t2v",))
    monkeypatch.setitem(runtime._dirs, "models", str(tmp_path / "models"))
    manager = vram.VramManager(device="cpu")
    monkeypatch.setattr(vram, "_DEFAULT", manager)
    C._TEXT_CACHE.clear()
    model, enc_image, enc_text = _wan_encoders("Actor LoRA Train", paths["t2v"], paths["vae"], paths["umt5"],
                                               paths["tokenizer"], "fp32")
    te_key = next(k for k in manager.models if k.startswith("text_encoder:"))
    calls = []
    manager.models[te_key].module.register_forward_hook(lambda m, a, o: calls.append(1))

    emb, mask = enc_text("Ana  a red cat walks ")
    again, mask2 = enc_text("Ana a red cat walks")                   # same caption after clean-up: cached
    assert len(calls) == 1 and torch.equal(emb, again) and torch.equal(mask, mask2)
    assert emb.shape == (512, 32) and mask.shape == (512,)

    # what the encoder computes by hand: tokenizer on the cleaned caption, UMT5, zero past its length
    from vibeboard.models import loaders
    tok = loaders.load_tokenizer(paths["tokenizer"])
    t = tok(["Ana a red cat walks"], max_length=512, padding="max_length", truncation=True, return_tensors="pt")
    with torch.no_grad():
        ref = manager.models[te_key].module(t.input_ids, t.attention_mask).last_hidden_state[0].float()
    n = int(t.attention_mask.sum())
    assert torch.equal(mask, t.attention_mask[0].long()) and n > 1
    torch.testing.assert_close(emb[:n], ref[:n])
    assert not emb[n:].any()

    pixels = torch.rand(1, 3, 32, 32) * 2 - 1
    vae = manager.models[next(k for k in manager.models if k.startswith("vae:"))].module
    with torch.no_grad():
        want = C.normalize(vae, vae.encode(pixels[:, :, None]).latent_dist.mode())[0]
    torch.testing.assert_close(enc_image(pixels), want)
    assert model.config.in_channels == 16
