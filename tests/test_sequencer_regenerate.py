"""Regenerate in place from the recipe: a clip whose media lacks the handles a dissolve needs is re-rendered from
the job in its metadata with +8 frames each side; the media changes, the cut points stay, the cut now renders."""
import pytest

pytest.importorskip("opentimelineio")

from vibeboard_runner.executor import Executor  # noqa: E402
from vibeboard_runner.registry import NodeRegistry  # noqa: E402
from vibeboard.media import video as video_io  # noqa: E402
from vibeboard.sequencer import conform, regenerate, timeline as tl  # noqa: E402


def clip_job(frames, clip_id, prefix):
    return {"1": {"class_type": "VBTestClip", "inputs": {"frames": frames, "fps": 24.0, "width": 64, "height": 48,
                                                         "clip_id": clip_id, "clap_frame": -1, "audio": "none",
                                                         "filename_prefix": prefix}}}


def test_regenerate_clip_with_handles_keeps_the_cut(tmp_path):
    executor = Executor(NodeRegistry.default(), output_dir=tmp_path / "out", input_dir=tmp_path / "in",
                        temp_dir=tmp_path / "t", models_dir=str(tmp_path / "models"))
    made = {}
    for name, frames, clip_id in (("a", 24, 0), ("b", 48, 1)):
        job = clip_job(frames, clip_id, f"shots/{name}")
        result = executor.execute(job)
        assert result.status == "success", result.error
        made[name] = (result.output_files()[0]["path"], job)
    cut = tl.new_timeline("regen", 24, 64, 48)
    video = tl.video_track(cut)
    recipe_a = {"prompt_graph": made["a"][1], "length_input": ["1", "frames"], "output_node": "1", "seed": 5}
    tl.append_clip(video, tl.make_clip("a", made["a"][0], 24, 0, 24, 24, recipe_a))
    tl.append_clip(video, tl.make_clip("b", made["b"][0], 24, 12, 24, 48), dissolve_frames=12)
    assert "handle frames after clip 'a'" in " ".join(tl.check_handles(video))

    job = regenerate.plan(cut, "a", 8)
    assert job["frames"] == 40 and job["graph"]["1"]["inputs"]["frames"] == 40 and made["a"][1]["1"]["inputs"]["frames"] == 24
    updated, path = regenerate.run(cut, job, executor)
    assert path != made["a"][0] and video_io.probe_video(path).frame_count == 40
    before, after = tl.summary(cut), tl.summary(updated)
    assert [c["record"] for c in after["tracks"][0]["clips"]] == [c["record"] for c in before["tracks"][0]["clips"]]
    assert after["tracks"][0]["clips"][0]["source"] == [8, 24]
    assert after["tracks"][0]["clips"][0]["recipe"]["handles"] == 8
    assert tl.check_handles(tl.video_track(updated)) == []
    out = str(tmp_path / "cut.mp4")
    assert conform.render(updated, out, preset="ultrafast")["frames"] == 48


def test_wan_length_rule_and_missing_recipe_are_handled(tmp_path):
    cut = tl.new_timeline("x", 24, 64, 48)
    fake = tmp_path / "x.mp4"
    fake.write_bytes(b"")
    recipe = {"prompt_graph": {"3": {"class_type": "WanSampler", "inputs": {"num_frames": 81}}},
              "length_input": ["3", "num_frames"], "length_rule": "4k+1"}
    tl.video_track(cut).append(tl.make_clip("w", str(fake), 24, 0, 50, 81, recipe))
    assert regenerate.plan(cut, "w", 8)["frames"] == 69  # 50 + 16 = 66 → 69 = 4·17 + 1
    tl.video_track(cut).append(tl.make_clip("plain", str(fake), 24, 0, 10, 81, {"seed": 1}))
    with pytest.raises(tl.TimelineError, match="has no 'prompt_graph'"):
        regenerate.plan(cut, "plain", 8)
    with pytest.raises(tl.TimelineError, match="no clip named 'nope'"):
        regenerate.plan(cut, "nope", 8)


def test_regenerate_a_tiny_wan_clip_with_handles(tmp_path):
    """'Regenerate clip 2 with +2 frames of handles' on a tiny random Wan2.1 T2V in the published file layout:
    the recipe's Wan job runs again asking for 4k+1 frames, the media changes, the cut points stay."""
    from vibeboard.common import runtime
    from vibeboard.models import selftest, tiny
    models = str(tmp_path / "models")
    tiny.write_comfy_layout(models, kinds=("t2v",))
    mp = pytest.MonkeyPatch()
    mp.setenv("VIBEBOARD_MODELS_DIR", models)
    mp.setitem(runtime._dirs, "models", models)
    try:
        executor = Executor(NodeRegistry.default(embedded=True), output_dir=tmp_path / "out", input_dir=tmp_path / "in",
                            temp_dir=tmp_path / "t", models_dir=models)
        prompt = selftest._base("wan2.1_t2v_1.3B_bf16.safetensors")
        prompt["4"] = {"class_type": "VBWanT2V", "inputs": {"wan": ["1", 0], "text": ["2", 0], "sampler": ["3", 0],
                                                            "width": 32, "height": 32, "length": 5}}
        prompt["8"] = {"class_type": "VBWanVAEDecode", "inputs": {"wan": ["1", 0], "latent": ["4", 0]}}
        prompt["9"] = {"class_type": "VBSaveVideo", "inputs": {"images": ["8", 0], "fps": 16.0,
                                                               "filename_prefix": "shots/wan", "crf": 19,
                                                               "preset": "ultrafast"}}
        first = executor.execute(prompt)
        assert first.status == "success", first.error
        shot1 = [f["path"] for f in first.output_files() if f["node"] == "9"][0]
        filler = executor.execute(clip_job(20, 0, "shots/filler"))
        cut = tl.new_timeline("wan", 16, 32, 32)
        video = tl.video_track(cut)
        tl.append_clip(video, tl.make_clip("filler", filler.output_files()[0]["path"], 16, 0, 12, 20))
        recipe = {"prompt_graph": prompt, "length_input": ["4", "length"], "length_rule": "4k+1", "output_node": "9",
                  "seed": 7, "model_ids": ["wan2.1_t2v_1.3B_bf16.safetensors"]}
        tl.append_clip(video, tl.make_clip("shot2", shot1, 16, 0, 5, 5, recipe), dissolve_frames=2)
        job = regenerate.plan(cut, "shot2", 2)
        assert job["frames"] == 9 and job["graph"]["4"]["inputs"]["length"] == 9
        updated, path = regenerate.run(cut, job, executor)
    finally:
        mp.undo()
    assert video_io.probe_video(path).frame_count == 9
    before, after = tl.summary(cut)["tracks"][0], tl.summary(updated)["tracks"][0]
    assert [c["record"] for c in after["clips"]] == [c["record"] for c in before["clips"]]
    assert after["clips"][1]["source"] == [2, 5] and after["transitions"] == before["transitions"]
    assert tl.check_handles(tl.video_track(updated)) == []
