"""wan/compile_cache.py: compiled-block artefacts are written to the models folder's state/ after the first compiled
forward, and a second process (with an empty inductor cache) loads them instead of compiling again; one graph serves
every block (regional compilation)."""
import json
import os
import subprocess
import sys
import textwrap

import torch

from vibeboard.wan import compile_cache

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A DiT stand-in with `.blocks` and a `.config`, compiled by the sampler's own compile_blocks. Its blocks are
# Linear only, so inductor emits extern matmul calls and no C++ kernel (a g++ build would take ~1 min on CI).
SCRIPT = textwrap.dedent("""
    import json, os, sys
    sys.path[:0] = [sys.argv[1], os.path.join(sys.argv[1], "custom_nodes")]
    import torch
    from torch._dynamo.utils import counters
    from vibeboard.wan import compile_cache, sampler

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(8, 8)

        def forward(self, x):
            return self.proj(x)

    class TinyDiT(torch.nn.Module):
        config = {"num_layers": 3, "dim": 8}

        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.ModuleList(Block() for _ in range(3))

        def forward(self, hidden_states):
            for blk in self.blocks:
                hidden_states = blk(hidden_states)
            return hidden_states

    torch.manual_seed(0)
    model = TinyDiT()
    sampler.compile_blocks(model)
    with torch.no_grad():
        out = model(hidden_states=torch.ones(2, 8))
        again = model(hidden_states=torch.ones(2, 8))
    print(json.dumps({"inductor": dict(counters["inductor"]), "aot": dict(counters["aot_autograd"]),
                      "out": out.tolist(), "same": bool(torch.equal(out, again)),
                      "files": sorted(os.listdir(compile_cache.machine_dir("cpu")))}))
""")


def _run(tmp_path, inductor_dir):
    env = {**os.environ, "VIBEBOARD_COMPILE_CACHE": str(tmp_path / "state" / "torch_compile"),
           "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / inductor_dir), "CUDA_VISIBLE_DEVICES": ""}
    script = tmp_path / "compile_once.py"
    script.write_text(SCRIPT)
    proc = subprocess.run([sys.executable, str(script), ROOT], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_second_process_loads_the_saved_artefacts_instead_of_compiling(tmp_path):
    first = _run(tmp_path, "inductor_first")
    assert first["inductor"].get("fxgraph_cache_miss") == 1 and not first["inductor"].get("fxgraph_cache_hit")
    assert first["aot"]["total"] == 1            # three blocks, one graph: compiled once, reused
    mega = [f for f in first["files"] if f.startswith("mega-") and f.endswith(".bin")]
    assert len(mega) == 1 and first["same"]
    size = os.path.getsize(tmp_path / "state" / "torch_compile" / compile_cache.machine_key("cpu") / mega[0])
    assert size > 0

    second = _run(tmp_path, "inductor_second")  # empty inductor cache: a hit can only come from the file
    assert second["inductor"].get("fxgraph_cache_hit") == 1 and not second["inductor"].get("fxgraph_cache_miss")
    assert second["aot"].get("autograd_cache_hit") == 1
    assert second["out"] == first["out"] and second["files"] == first["files"]


def test_keys_separate_machines_shapes_and_modes(tmp_path, monkeypatch):
    model = torch.nn.Linear(2, 2)
    a = compile_cache.shape_key(model, (), {"hidden_states": torch.zeros(1, 2)})
    assert a == compile_cache.shape_key(model, (), {"hidden_states": torch.ones(1, 2)})
    assert a != compile_cache.shape_key(model, (), {"hidden_states": torch.zeros(2, 2)})
    assert a != compile_cache.shape_key(model, (), {"hidden_states": torch.zeros(1, 2, dtype=torch.bfloat16)})
    assert a != compile_cache.shape_key(model, (), {"hidden_states": torch.zeros(1, 2)}, mode="max-autotune")
    key = compile_cache.machine_key("cpu")
    assert torch.__version__.replace("+", "+") in key and "/" not in key

    monkeypatch.delenv("VIBEBOARD_COMPILE_CACHE", raising=False)
    from vibeboard.common import runtime
    monkeypatch.setattr(runtime, "_dirs", {"models": str(tmp_path / "models")})
    assert compile_cache.machine_dir("cpu") == str(tmp_path / "models" / "state" / "torch_compile" / key)
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    path = compile_cache.use_persistent_inductor_dir("cpu")
    assert path == os.path.join(compile_cache.machine_dir("cpu"), "inductor") and os.path.isdir(path)
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == path
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    assert compile_cache.use_persistent_inductor_dir("cpu") is None       # the user's choice stays


def test_a_damaged_artefact_file_is_ignored(tmp_path, monkeypatch):
    monkeypatch.setenv("VIBEBOARD_COMPILE_CACHE", str(tmp_path))
    path = compile_cache.artefact_path("damaged", "cpu")
    os.makedirs(os.path.dirname(path))
    with open(path, "wb") as f:
        f.write(b"not a cache")
    assert compile_cache.load("damaged", "cpu") is False
