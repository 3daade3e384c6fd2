"""VBSaveVideo embeds the recipe like ComfyUI's savers: the API prompt and the UI workflow as MP4 metadata tags,
read back with PyAV (the editor reopens the workflow from them: test_service_frontend_browser.py)."""
import json

import av
import torch


def test_save_video_embeds_prompt_and_workflow(tmp_path):
    from vibeboard_runner.executor import Executor
    from vibeboard_runner.registry import NodeRegistry
    prompt = {"1": {"class_type": "VBSaveVideo", "inputs": {"images": ["2", 0], "fps": 8.0, "crf": 30,
                                                            "preset": "ultrafast", "filename_prefix": "meta/clip"}},
              "2": {"class_type": "VBSampleRGBDScene", "inputs": {"width": 64, "height": 48, "seed": 0}}}
    workflow = {"id": "wf-meta", "nodes": [{"id": 1, "type": "VBSaveVideo"}], "links": []}
    executor = Executor(NodeRegistry.default(embedded=True), output_dir=str(tmp_path / "out"),
                        input_dir=str(tmp_path / "in"), temp_dir=str(tmp_path / "tmp"))
    result = executor.execute(prompt, extra_data={"extra_pnginfo": {"workflow": workflow}})
    assert result.status == "success", result.error
    (path,) = [f["path"] for f in result.output_files() if f["filename"].endswith(".mp4")]
    with av.open(path) as container:
        tags = dict(container.metadata)
    assert json.loads(tags["workflow"]) == workflow
    assert json.loads(tags["prompt"])["1"]["class_type"] == "VBSaveVideo"


def test_save_video_without_recipe_has_no_tags(tmp_path):
    from vibeboard.media.video import write_video
    path = str(tmp_path / "plain.mp4")
    write_video(path, torch.zeros(2, 16, 16, 3), 8, preset="ultrafast")
    with av.open(path) as container:
        assert "workflow" not in container.metadata and "prompt" not in container.metadata
