"""Generation stripboard: the render farm's shooting schedule.

Each scene is planned as render tasks (which workflow and resident model renders it) from its breakdown:
speaking cast → talking-head performance (Character Foundry, FlashPortrait on Wan2.1-I2V-14B), a scene that
continues the one before → StoryMem continuation (Wan2.2-I2V-A14B + LoRA), otherwise a new shot (Wan2.1-T2V).
Scenes are then ordered so scenes that need the same model run back to back (a model swap costs a load of
tens of GB), keeping script order inside each group. Minutes and cost come from `render_costs.json`.
"""
from __future__ import annotations

import json
import os
from typing import List, Optional

_COSTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "render_costs.json")
MODEL_SWAP_S = 60.0  # loading a 14B model from local NVMe into VRAM, roughly; counted per swap


def load_costs(path: Optional[str] = None) -> dict:
    with open(path or _COSTS) as handle:
        return json.load(handle)


def plan_scene(scene: dict, tags: List[dict], previous: Optional[dict], seconds: float) -> List[dict]:
    """Render tasks of one scene: [{workflow, model, clip_seconds}] for `seconds` of finished video."""
    speaking = [t for t in tags if t["category"] == "cast" and t.get("note") == "speaking"]
    tasks = []
    continuous = scene.get("time_of_day") in ("CONTINUOUS", "SAME", "MOMENTS LATER") and previous is not None
    if continuous:
        tasks.append({"workflow": "shot_studio", "model": "storymem-lora", "share": 1.0})
    else:
        tasks.append({"workflow": "shot_studio", "model": "wan2.1-t2v-1.3b", "share": 1.0})
    if speaking:
        tasks[0]["share"] = 0.4
        tasks.append({"workflow": "character_foundry", "model": "flashportrait", "share": 0.6})
    for t in tasks:
        t["clip_seconds"] = round(seconds * t.pop("share"), 2)
    return tasks


def build(db, revision_id: Optional[int] = None, costs: Optional[dict] = None) -> dict:
    costs = costs or load_costs()
    per_eighth = float(costs.get("seconds_per_eighth", 7.5))
    rate = float(costs.get("usd_per_gpu_hour", 3.5))
    scenes = db.scenes(revision_id)
    tags = db.tags(revision_id)
    strips = []
    prev = None
    for s in scenes:
        tasks = plan_scene(s, [t for t in tags if t["scene_idx"] == s["idx"]], prev, s["eighths"] * per_eighth)
        gpu_s = 0.0
        for t in tasks:
            model = costs["models"].get(t["model"], {"gpu_s_per_clip_s": 60.0, "measured": False})
            t["gpu_seconds"] = round(t["clip_seconds"] * model["gpu_s_per_clip_s"], 1)
            t["estimate_measured"] = bool(model.get("measured"))
            gpu_s += t["gpu_seconds"]
        strips.append({"scene": s["number"], "heading": s["heading"], "day_night": s["day_night"],
                       "eighths": s["eighths"], "tasks": tasks, "models": [t["model"] for t in tasks],
                       "gpu_minutes": round(gpu_s / 60, 2), "cost_usd": round(gpu_s / 3600 * rate, 3)})
        prev = s
    queue = order_for_farm(strips)
    script_queue = [dict(t, scene=s["scene"]) for s in strips for t in s["tasks"]]
    return {"strips": strips, "render_queue": queue, "script_order_swaps": count_swaps(script_queue),
            "swaps": count_swaps(queue),
            "swap_minutes_saved": round((count_swaps(script_queue) - count_swaps(queue)) * MODEL_SWAP_S / 60, 1),
            "gpu_minutes": round(sum(s["gpu_minutes"] for s in strips), 2),
            "cost_usd": round(sum(s["cost_usd"] for s in strips), 3), "usd_per_gpu_hour": rate}


def count_swaps(tasks: List[dict]) -> int:
    """Model loads needed to run the tasks in this order with one model resident at a time."""
    resident, swaps = None, 0
    for t in tasks:
        if t["model"] != resident:
            swaps += 1
            resident = t["model"]
    return swaps


def order_for_farm(strips: List[dict]) -> List[dict]:
    """The render queue: every task of every scene, grouped by model (one load per model), groups in the order
    the script first needs them — so a StoryMem continuation runs after the new-shot group that renders the
    scene it continues — and script order inside a group."""
    groups: dict = {}
    for s in strips:
        for t in s["tasks"]:
            groups.setdefault(t["model"], []).append(dict(t, scene=s["scene"]))
    return [t for tasks in groups.values() for t in tasks]
