"""Generation stripboard: render tasks per scene, grouped by model for the farm, GPU-minutes and cost."""
import pytest

from vibeboard.assetdb import AssetDB
from vibeboard.models import registry
from vibeboard.scriptlab import pipeline, stripboard


def test_cost_figures_name_registry_models():
    known = set(registry.load_registry()["models"])
    costs = stripboard.load_costs()
    assert set(costs["models"]) <= known
    assert costs["models"]["wan2.1-t2v-1.3b"]["measured"]


def test_tasks_are_grouped_by_model_and_costed(tmp_path):
    pipeline.run_breakdown(pipeline.sample_path(), str(tmp_path / "p.vbdb"))
    with AssetDB(str(tmp_path / "p.vbdb")) as db:
        board = stripboard.build(db)
    strips = {s["scene"]: s for s in board["strips"]}
    assert strips["4"]["models"][0] == "storymem-lora"            # CONTINUOUS: continues scene 3
    assert "flashportrait" in strips["2"]["models"]               # speaking cast
    assert strips["3"]["models"] == ["wan2.1-t2v-1.3b"]           # nobody speaks
    queue = [t["model"] for t in board["render_queue"]]
    assert queue == sorted(queue, key=queue.index)                # each model's tasks are contiguous
    assert board["swaps"] == len(set(queue)) < board["script_order_swaps"]
    costs = stripboard.load_costs()
    t = strips["3"]["tasks"][0]
    assert t["clip_seconds"] == pytest.approx(costs["seconds_per_eighth"] * 1)
    assert t["gpu_seconds"] == pytest.approx(t["clip_seconds"] * costs["models"]["wan2.1-t2v-1.3b"]["gpu_s_per_clip_s"])
    assert board["cost_usd"] == pytest.approx(sum(s["cost_usd"] for s in board["strips"]))
    assert strips["3"]["cost_usd"] == pytest.approx(t["gpu_seconds"] / 3600 * costs["usd_per_gpu_hour"], abs=1e-3)
