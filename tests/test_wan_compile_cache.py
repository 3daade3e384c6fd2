"""wan/compile_cache.py: compiled-block artefacts are written to the models folder's state/ after the first compiled
forward, and a second process (with an empty inductor cache) loads them instead of compiling again; one graph serves
every block (regional compilation)."""
import importlib.util
import os

import torch

from vibeboard.wan import compile_cache

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_second_process_loads_the_saved_artefacts_instead_of_compiling(tmp_path):
    """bench/compile_warmup.py --quick: three fresh processes compile a three-block stand-in through the sampler's
    compile_blocks — cold, warm (same state folder), and with only the mega-cache file (empty inductor dir)."""
    spec = importlib.util.spec_from_file_location("compile_warmup", os.path.join(ROOT, "bench", "compile_warmup.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.main(["--quick", "--json", str(tmp_path / "out.json")])["default"]
    cold, warm, mega = rows["cold"], rows["warm"], rows["mega only"]
    assert cold["counters"]["inductor"].get("fxgraph_cache_miss") == 1
    assert not cold["counters"]["inductor"].get("fxgraph_cache_hit")
    assert cold["counters"]["aot_autograd"]["total"] == 1          # three blocks, one graph: compiled once
    assert cold["mega_files_before"] == [] and len(cold["mega_files_after"]) == 1
    assert cold["inductor_dir"].endswith(os.path.join(compile_cache.machine_key("cpu"), "inductor"))
    for second in (warm, mega):                                      # a new process finds and loads them
        assert second["mega_files_before"] == cold["mega_files_after"]
        assert second["counters"]["inductor"].get("fxgraph_cache_hit") == 1
        assert not second["counters"]["inductor"].get("fxgraph_cache_miss")
        assert second["counters"]["aot_autograd"].get("autograd_cache_hit") == 1
        assert second["max_abs_vs_eager"] == 0
    assert mega["inductor_dir"].endswith("_empty_inductor")         # so its hit came from the mega-cache file


def test_keys_separate_machines_shapes_and_modes(tmp_path, monkeypatch):
    model = torch.nn.Linear(2, 2)
    a = compile_cache.shape_key(model, (), {"hidden_states": torch.zeros(1, 2)})
    assert a == compile_cache.shape_key(model, (), {"hidden_states": torch.ones(1, 2)})
    assert a != compile_cache.shape_key(model, (), {"hidden_states": torch.zeros(2, 2)})
    assert a != compile_cache.shape_key(model, (), {"hidden_states": torch.zeros(1, 2, dtype=torch.bfloat16)})
    assert a != compile_cache.shape_key(model, (), {"hidden_states": torch.zeros(1, 2)}, mode="max-autotune")
    key = compile_cache.machine_key("cpu")
    assert key.startswith("torch" + torch.__version__) and "/" not in key

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
