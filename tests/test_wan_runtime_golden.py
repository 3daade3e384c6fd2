"""Golden outputs: every Wan-based node, tiny random models, fixed seeds → the recorded latents / frames.

The one Wan runtime (wan/sampler.py) replaced three sampling stacks; these cases were recorded on the old stacks
before the refactor, so a difference here is a change in numbers, never silent. Bit-exact on the CPU kind the
golden was recorded on (torch's CPU capability and version); elsewhere within float tolerance. Cases whose numbers
changed on purpose are listed with the reason in tests/data/wan_golden.md.
"""
import json
import os

import pytest
import torch
from safetensors.torch import load_file, save_file

import wan_golden_cases as cases

DATA = os.path.join(os.path.dirname(__file__), "data")
GOLDEN = os.path.join(DATA, "wan_golden.safetensors")
RECORD = os.environ.get("VB_RECORD_GOLDEN") == "1"


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    from vibeboard.common import runtime
    root = tmp_path_factory.mktemp("golden_models")
    paths = cases.build_models(str(root))
    saved = dict(runtime._dirs)
    runtime.set_host_dirs(models=str(root))
    yield cases.Ctx(paths)
    runtime._dirs.clear()
    runtime._dirs.update(saved)


@pytest.fixture(scope="module")
def recorded():
    out = {}
    yield out
    if RECORD and out:
        old = load_file(GOLDEN) if os.path.isfile(GOLDEN) else {}
        old.update(out)
        meta = {"torch": torch.__version__, "cpu": torch.backends.cpu.get_cpu_capability()}
        save_file({k: v.contiguous() for k, v in old.items()}, GOLDEN, metadata={"recorded_on": json.dumps(meta)})


def _same_machine_kind() -> bool:
    from safetensors import safe_open
    with safe_open(GOLDEN, "pt") as f:
        meta = json.loads((f.metadata() or {}).get("recorded_on", "{}"))
    return meta == {"torch": torch.__version__, "cpu": torch.backends.cpu.get_cpu_capability()}


@pytest.mark.parametrize("name", list(cases.CASES))
def test_node_output_matches_golden(name, ctx, recorded):
    torch.manual_seed(0)
    out = cases.CASES[name](ctx).detach().float().cpu().contiguous()
    assert torch.isfinite(out).all()
    if RECORD:
        recorded[name] = out
        return
    want = load_file(GOLDEN)[name]
    assert out.shape == want.shape
    if _same_machine_kind():
        assert torch.equal(out, want), f"{name}: max diff {(out - want).abs().max().item():.3e}"
    else:
        torch.testing.assert_close(out, want, rtol=1e-4, atol=1e-5)
