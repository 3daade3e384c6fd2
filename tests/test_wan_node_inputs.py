"""Review-pack: Wan generate nodes refuse a model of the wrong kind with a NodeInputError naming the input."""
import pytest
import torch

from vibeboard.common.runtime import NodeInputError
from vibeboard.models import tiny, vram
from vibeboard.wan.handle import WanHandle
from vibeboard.wan.nodes import VBWanT2V


def _handle(kind):
    mgr = vram.VramManager(budget_bytes=1 << 30, device="cpu", pin=False)
    mgr.register(f"t-{kind}", tiny.build_transformer(kind, 0))
    mgr.register("vae", tiny.build_vae(0))
    return WanHandle(variant=kind, keys={"transformer": f"t-{kind}", "vae": "vae"}, manager=mgr,
                     dtype=torch.float32)


def test_t2v_on_an_i2v_model_names_the_wan_input():
    wan = _handle("i2v")
    text = {"prompt_embeds": torch.zeros(1, 8, 32), "negative_embeds": torch.zeros(1, 8, 32)}
    with pytest.raises(NodeInputError) as err:
        VBWanT2V().generate(wan, text, 16, 16, 1)
    assert err.value.input_name == "wan" and "Wan Text to Video" in str(err.value)


def test_v2v_with_latents_of_another_vae_names_the_latent_input():
    from vibeboard.wan.nodes import VBWanV2V

    wan = _handle("t2v")
    text = {"prompt_embeds": torch.zeros(1, 8, 32), "negative_embeds": torch.zeros(1, 8, 32)}
    with pytest.raises(NodeInputError) as err:
        VBWanV2V().generate(wan, text, {"samples": torch.zeros(1, 48, 1, 2, 2)}, 0.5)
    assert err.value.input_name == "latent"


def test_vace_context_reads_a_2d_mask_as_one_frame_held():
    from vibeboard.wan import conditioning as C

    wan = _handle("t2v")
    mask = (torch.rand(16, 16) > 0.5).float()
    flat, _ = C.vace_context(wan, 5, 16, 16, mask=mask)
    batched, _ = C.vace_context(wan, 5, 16, 16, mask=mask[None])
    torch.testing.assert_close(flat, batched)


def test_qwen_edit_node_passes_a_2d_mask_whole(monkeypatch):
    from vibeboard.vfx import nodes as V
    from vibeboard.vfx import qwen_edit

    seen = []
    monkeypatch.setattr(qwen_edit, "edit", lambda pipe, images, instruction, negative, steps, cfg, seed, m, *rest:
                        (seen.append(m), images[0][None])[1])
    mask = torch.ones(8, 8)
    V.VBQwenEdit().run(None, torch.rand(2, 8, 8, 3), "do it", 1, 1.0, 0, mask=mask)
    assert all(m.shape == (1, 8, 8) for m in seen)
