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
