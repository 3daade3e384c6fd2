"""LoRA strength semantics in every shared format; the VRAM manager's budget, LRU order and reload tiers."""
import torch

import pytest

from vibeboard.models import lora, tiny, vram
from vibeboard.models.blockswap import BlockSwap, SequentialOffload


def _run(model):
    g = torch.Generator().manual_seed(0)
    x, emb = torch.randn(1, 16, 2, 4, 4, generator=g), torch.randn(1, 8, 32, generator=g)
    with torch.no_grad():
        return model(x, torch.tensor([500.0]), emb).sample


@pytest.mark.parametrize("fmt,alpha", [("peft", None), ("diffusion_model", None), ("kohya", 2.0)])
def test_lora_strength(tmp_path, fmt, alpha):
    model = tiny.build_transformer("t2v", 0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ref = _run(model)
    path = str(tmp_path / f"{fmt}.safetensors")
    truth = tiny.write_lora(path, model, fmt, alpha=alpha, blocks=(0, 1))
    groups = lora.read_lora(path)
    with lora.applied(model, [(groups, 0.0)]):
        assert torch.equal(_run(model), ref)
        assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    s = 0.7
    with lora.applied(model, [(path, s)]):
        after = model.state_dict()
        changed = {k for k, v in after.items() if not torch.equal(v, before[k])}
        assert changed == {name + ".weight" for name in truth}          # exactly the targeted layers
        for name, (down, up, a) in truth.items():
            want = before[name + ".weight"] + s * (a / down.shape[0]) * (up @ down)
            torch.testing.assert_close(after[name + ".weight"], want, rtol=0, atol=1e-6)
        assert not torch.allclose(_run(model), ref)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # removed exactly


def test_lora_unknown_names_are_an_error(tmp_path):
    from safetensors.torch import save_file
    path = str(tmp_path / "bad.safetensors")
    save_file({"lora_unet_blocks_9_self_attn_q.lora_down.weight": torch.zeros(2, 32),
               "lora_unet_blocks_9_self_attn_q.lora_up.weight": torch.zeros(32, 2)}, path)
    with pytest.raises(ValueError, match="names no layer"):
        with lora.applied(tiny.build_transformer("t2v"), [(path, 1.0)]):
            pass


def _bytes(m):
    return sum(t.numel() * t.element_size() for t in list(m.parameters()) + list(m.buffers()))


def test_vram_budget_lru_and_tiers(tmp_path):
    models = [tiny.build_transformer("t2v", i) for i in range(3)]
    refs = [_run(m) for m in models]
    size = _bytes(models[0])
    mgr = vram.VramManager(budget_bytes=int(size * 2.5), device="cpu", host_budget_bytes=int(size * 1.5),
                           disk_dir=str(tmp_path / "spill"))
    for i, m in enumerate(models):
        mgr.register(f"m{i}", m)
    order = [0, 1, 2, 0, 1, 2, 1, 0, 2]
    for step, i in enumerate(order):
        with mgr.use(f"m{i}") as module:
            assert torch.equal(_run(module), refs[i])
            assert mgr.device_bytes() <= mgr.budget
        if step == 2:  # m0, m1, m2 loaded in turn: the third load must have evicted the oldest (m0)
            offloads = [n for a, n in mgr.events if a == "offload"]
            assert offloads == ["m0"]
    assert mgr.peak_device_bytes <= mgr.budget
    actions = [a for a, _ in mgr.events]
    assert "to_disk" in actions and "from_disk" in actions
    # Every eviction picked the least recently used model that was resident.
    resident, last = [], {}
    for step, (action, name) in enumerate(mgr.events):
        if action == "resident":
            resident.append(name)
        if action in ("resident", "hit"):
            last[name] = step
        elif action == "offload":
            assert name == min(resident, key=lambda n: last[n])
            resident.remove(name)


def test_vram_reload_from_pinned_tier_without_disk():
    models = [tiny.build_transformer("t2v", i) for i in range(3)]
    size = _bytes(models[0])
    mgr = vram.VramManager(budget_bytes=int(size * 1.5), device="cpu")
    for i, m in enumerate(models):
        mgr.register(f"m{i}", m)
    for i in (0, 1, 0):
        with mgr.use(f"m{i}"):
            pass
    assert mgr.events[-2:] == [("load", "m0"), ("resident", "m0")]
    assert not any(a in ("to_disk", "from_disk") for a, _ in mgr.events)
    assert mgr.models["m0"].store is not None  # came back from its host copy
    stats = mgr.stats()
    assert {m["name"] for m in stats["models"]} == {"m0", "m1", "m2"}
    assert stats["device_bytes"] == size
    assert mgr.free() == size and mgr.device_bytes() == 0


def test_oversized_model_uses_block_swap_and_stays_exact():
    model = tiny.build_transformer("t2v", 4, num_layers=4)
    ref = _run(model)
    per_block = _bytes(model.blocks[0])
    mgr = vram.VramManager(budget_bytes=_bytes(model) - per_block, device="cpu")
    mgr.register("big", model)
    with mgr.use("big") as m:
        assert isinstance(mgr.models["big"].runner, BlockSwap)
        assert torch.equal(_run(m), ref)
        assert mgr.device_bytes() <= mgr.budget
    swap = BlockSwap(tiny.build_transformer("t2v", 4, num_layers=4), "cpu", resident=1)
    assert torch.equal(_run(swap.model), ref) and swap.transfers >= 3


def test_sequential_offload_exact():
    enc = tiny.build_umt5()
    ids = torch.tensor([[11, 15, 13, 1]])
    with torch.no_grad():
        ref = enc(ids).last_hidden_state
        seq = SequentialOffload(enc, "cpu")
        assert torch.equal(enc(ids).last_hidden_state, ref)
        assert seq.device_bytes() == 0  # everything went back after its forward
    seq.detach()
