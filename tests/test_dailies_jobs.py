"""Runner jobs become Dailies versions with a recipe read from the job's prompt; an approved one flows into the
assembled cut and can be re-rendered from that recipe with handles (job → version → approval → cut → regenerate)."""
import pytest

pytest.importorskip("opentimelineio")

from vibeboard_runner.executor import Executor  # noqa: E402
from vibeboard_runner.jobstore import JobStore  # noqa: E402
from vibeboard_runner.registry import NodeRegistry  # noqa: E402
from vibeboard_runner.service import files_from_ui  # noqa: E402
from vibeboard.dailies.jobs import add_job_outputs, recipe_from_prompt  # noqa: E402
from vibeboard.dailies.store import DailiesStore  # noqa: E402
from vibeboard.sequencer import assembly, regenerate, timeline as tl  # noqa: E402

PROMPT = {"1": {"class_type": "VBTestClip", "inputs": {"frames": 30, "fps": 24.0, "width": 64, "height": 48,
                                                       "clip_id": 1, "clap_frame": -1, "audio": "none",
                                                       "filename_prefix": "shots/sh010"}}}


def test_recipe_reads_seed_prompt_models_and_length():
    prompt = {"4": {"class_type": "WanSampler", "inputs": {"seed": 7, "num_frames": 81, "model": ["3", 0]}},
              "3": {"class_type": "WanLoader", "inputs": {"checkpoint": "wan/wan2.1_t2v_1.3B.safetensors"}},
              "5": {"class_type": "TextEncode", "inputs": {"text": "a red door at dusk"}}}
    recipe = recipe_from_prompt(prompt, "job-1", "9")
    assert recipe["seed"] == 7 and recipe["prompt"] == "a red door at dusk"
    assert recipe["model_ids"] == ["wan/wan2.1_t2v_1.3B.safetensors"]
    assert recipe["length_input"] == ["4", "num_frames"] and recipe["length_rule"] == "4k+1"
    assert recipe["prompt_graph"] is prompt and recipe["job_id"] == "job-1" and recipe["output_node"] == "9"


def test_job_to_version_to_cut_to_regenerate(tmp_path):
    dirs = {"output": str(tmp_path / "out"), "input": str(tmp_path / "in"), "temp": str(tmp_path / "t")}
    executor = Executor(NodeRegistry.default(), output_dir=dirs["output"], input_dir=dirs["input"],
                        temp_dir=dirs["temp"], models_dir=str(tmp_path / "models"))
    jobs = JobStore(str(tmp_path / "jobs.sqlite"))
    jobs.add("job-1", PROMPT, {}, ["1"], 1.0)
    result = executor.execute(PROMPT)
    jobs.finish("job-1", "success", {"outputs": result.outputs})
    job = jobs.get("job-1")

    store = DailiesStore(str(tmp_path / "dailies.sqlite"))
    (version,) = add_job_outputs(store, "sh010", job["id"], job["prompt"], files_from_ui(job["history"]["outputs"], dirs))
    assert version["id"] == "sh010_v001" and version["frames"] == 30
    assert version["recipe"]["job_id"] == "job-1" and version["recipe"]["length_input"] == ["1", "frames"]
    store.set_status(version["id"], "approved")

    cut = assembly.assemble({"fps": 24, "width": 64, "height": 48, "shots": [{"shot": "sh010", "source_in": 3,
                                                                              "duration": 24}]},
                            store.latest_approved)
    plan = regenerate.plan(cut, "sh010", 8)
    assert plan["frames"] == 40 and plan["output_node"] == "1"
    updated, path = regenerate.run(cut, plan, executor)
    assert tl.summary(updated)["tracks"][0]["clips"][0]["record"] == [0, 24]
    assert tl.summary(updated)["tracks"][0]["clips"][0]["source"] == [8, 24]
    assert path.endswith(".mp4") and path != version["path"]
