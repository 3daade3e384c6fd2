"""Review-pack: a LoRA that cannot apply is reported by the Wan LoRA node, not later inside the sampler."""
import os

import pytest
import torch
from safetensors.torch import save_file

from vibeboard.common import runtime
from vibeboard.common.runtime import NodeInputError
from vibeboard.models import tiny, vram
from vibeboard.wan.handle import WanHandle
from vibeboard.wan.nodes import VBWanLoRA


@pytest.fixture
def loras(tmp_path, monkeypatch):
    folders = {k: str(tmp_path / k) for k in ("output", "input", "temp", "models")}
    monkeypatch.setattr(runtime, "_dirs", dict(folders))
    monkeypatch.delenv("VIBEBOARD_MODELS_DIR", raising=False)
    folder = os.path.join(folders["models"], "loras")
    os.makedirs(folder)
    return folder


def _handle():
    mgr = vram.VramManager(budget_bytes=1 << 30, device="cpu", pin=False)
    mgr.register("t", tiny.build_transformer("t2v", 0))
    return WanHandle(variant="t2v", keys={"transformer": "t"}, manager=mgr)


BAD = {
    "no_layer": {"lora_unet_blocks_9_self_attn_q.lora_down.weight": torch.zeros(2, 32),
                 "lora_unet_blocks_9_self_attn_q.lora_up.weight": torch.zeros(32, 2)},
    "wrong_shape": {"lora_unet_blocks_0_self_attn_q.lora_down.weight": torch.zeros(2, 64),
                    "lora_unet_blocks_0_self_attn_q.lora_up.weight": torch.zeros(64, 2)},
    "dora": {"lora_unet_blocks_0_self_attn_q.lora_down.weight": torch.zeros(2, 32),
             "lora_unet_blocks_0_self_attn_q.lora_up.weight": torch.zeros(32, 2),
             "lora_unet_blocks_0_self_attn_q.dora_scale": torch.ones(1, 32)},
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_wan_lora_node_refuses_a_lora_that_does_not_fit(loras, kind):
    save_file(BAD[kind], os.path.join(loras, f"{kind}.safetensors"))
    with pytest.raises(NodeInputError) as err:
        VBWanLoRA().apply(_handle(), f"{kind}.safetensors", 1.0)
    assert err.value.input_name == "lora_name" and "Wan LoRA" in str(err.value)


def test_wan_lora_node_accepts_a_fitting_lora(loras):
    wan = _handle()
    tiny.write_lora(os.path.join(loras, "ok.safetensors"), wan.module("transformer"), "kohya", alpha=2.0, blocks=(0,))
    new = VBWanLoRA().apply(wan, "ok.safetensors", 0.5)[0]
    assert len(new.loras) == 1 and wan.loras == []
