"""Job outputs → Dailies versions. A finished runner job (its API prompt + the files its output nodes wrote)
becomes the next version of a shot, with a recipe read from the prompt itself: the whole graph (so Sequencer
can re-render the clip with handles), the seed, the model files, the prompt text and the frame-count input.
"""
from __future__ import annotations

from typing import Iterable, List, Optional

from .store import DailiesStore

SEED_INPUTS = ("seed", "noise_seed")
TEXT_INPUTS = ("prompt", "text", "positive", "instruction")
LENGTH_INPUTS = ("num_frames", "frames", "length", "frame_count", "video_length")
MODEL_SUFFIXES = (".safetensors", ".gguf", ".sft", ".pt", ".pth", ".ckpt", ".bin", ".onnx")
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm")


def recipe_from_prompt(prompt: dict, job_id: Optional[str] = None, output_node: Optional[str] = None) -> dict:
    """What made a clip, read from the API-format graph that ran."""
    recipe = {"job_id": job_id, "prompt_graph": prompt, "model_ids": []}
    for node_id in sorted(prompt, key=lambda k: (len(str(k)), str(k))):
        inputs = prompt[node_id].get("inputs", {})
        for name, value in inputs.items():
            if isinstance(value, list):
                continue  # a link, not a value
            if name in SEED_INPUTS and "seed" not in recipe and isinstance(value, int):
                recipe["seed"] = value
            elif name in TEXT_INPUTS and "prompt" not in recipe and isinstance(value, str) and value.strip():
                recipe["prompt"] = value
            elif name in LENGTH_INPUTS and "length_input" not in recipe and isinstance(value, int):
                recipe["length_input"] = [str(node_id), name]
                recipe["length_rule"] = "4k+1" if "Wan" in prompt[node_id].get("class_type", "") else "any"
            elif isinstance(value, str) and value.lower().endswith(MODEL_SUFFIXES) and value not in recipe["model_ids"]:
                recipe["model_ids"].append(value)
    if output_node is not None:
        recipe["output_node"] = str(output_node)
    return recipe


def add_job_outputs(store: DailiesStore, shot: str, job_id: str, prompt: dict, files: Iterable[dict],
                    parent_id: Optional[str] = None, fps: Optional[float] = None) -> List[dict]:
    """One version per video the job wrote (`files`: rows {node, path}, as the runner lists outputs)."""
    from ..media import video as video_io
    added = []
    for row in files:
        path = row["path"]
        if not path.lower().endswith(VIDEO_SUFFIXES):
            continue
        info = video_io.probe_video(path)
        recipe = recipe_from_prompt(prompt, job_id, row.get("node"))
        version = store.add_version(shot, path, recipe, parent_id=parent_id, frames=info.frame_count,
                                    fps=fps or float(info.frame_rate))
        added.append(version)
        parent_id = version["id"]
    return added
