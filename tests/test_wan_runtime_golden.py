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


def _recorded_on() -> dict:
    from safetensors import safe_open
    if not os.path.isfile(GOLDEN):
        return {}
    with safe_open(GOLDEN, "pt") as f:
        return json.loads((f.metadata() or {}).get("recorded_on", "{}"))


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    from vibeboard.common import runtime
    # CPU matmuls sum in a thread-count-dependent order, and some libraries change the process-wide count when
    # imported (silero-vad sets 1): run with the thread count the golden was recorded with.
    threads = torch.get_num_threads()
    torch.set_num_threads(int(_recorded_on().get("threads", threads)) if not RECORD else threads)
    root = tmp_path_factory.mktemp("golden_models")
    paths = cases.build_models(str(root))
    saved = dict(runtime._dirs)
    runtime.set_host_dirs(models=str(root))
    yield cases.Ctx(paths)
    runtime._dirs.clear()
    runtime._dirs.update(saved)
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def recorded():
    out = {}
    yield out
    if RECORD and out:
        old = load_file(GOLDEN) if os.path.isfile(GOLDEN) else {}
        old.update(out)
        meta = {"torch": torch.__version__, "cpu": torch.backends.cpu.get_cpu_capability(),
                "threads": torch.get_num_threads()}
        save_file({k: v.contiguous() for k, v in old.items()}, GOLDEN, metadata={"recorded_on": json.dumps(meta)})


def _same_machine_kind() -> bool:
    meta = _recorded_on()
    return (meta.get("torch"), meta.get("cpu")) == (torch.__version__, torch.backends.cpu.get_cpu_capability())


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
