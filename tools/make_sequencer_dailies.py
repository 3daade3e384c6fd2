"""Regenerate workflows/sequencer(.api).json and workflows/dailies(.api).json.

Both run headless with no weights on clips the workflow writes itself (Test Clip: colour-coded frames, a tone
or a clap). In a real project the Test Clip nodes are replaced by Shot Studio outputs (Save Video paths).

    python tools/make_sequencer_dailies.py
"""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "custom_nodes"), ROOT]

DIALOGUE = ("[0.20-1.40] Where were you last night?\n"
            "[1.60-2.90] I was working. You know that.")


def clip(clip_id, prefix, frames=48, clap=-1, audio="tone"):
    return {"class_type": "VBTestClip", "inputs": {"frames": frames, "fps": 24.0, "width": 64, "height": 48,
                                                   "clip_id": clip_id, "clap_frame": clap, "audio": audio,
                                                   "filename_prefix": prefix}}


def add(timeline, media, name, track="V1", source_in=6, duration=24, dissolve=0, recipe=None):
    return {"class_type": "VBTimelineAddClip", "inputs": {
        "timeline": timeline, "media_path": media, "name": name, "track": track, "source_in": source_in,
        "duration": duration, "dissolve_frames": dissolve, "recipe": json.dumps(recipe or {})}}


SEQUENCER = {
    "1": clip(0, "vibeboard/sequencer/sh010"),
    "2": clip(1, "vibeboard/sequencer/sh020", clap=20, audio="clap"),
    "3": clip(2, "vibeboard/sequencer/sh030"),
    "4": {"class_type": "VBTimelineNew", "inputs": {"name": "Sequencer demo", "fps": 24.0, "width": 64,
                                                    "height": 48, "start_timecode": "01:00:00:00"}},
    "5": add(["4", 0], ["1", 0], "sh010", recipe={"workflow": "shot_studio", "seed": 1, "prompt": "a red door"}),
    "6": add(["5", 0], ["2", 0], "sh020", dissolve=12, recipe={"workflow": "shot_studio", "seed": 2}),
    "7": add(["6", 0], ["3", 0], "sh030", recipe={"workflow": "shot_studio", "seed": 3}),
    "8": add(["7", 0], ["1", 0], "music", track="A2 Music", source_in=0, duration=0),
    "9": {"class_type": "VBTimelineAudio", "inputs": {"timeline": ["8", 0], "track": "A2 Music", "gain_db": -6.0,
                                                      "duck_under": "A1 Dialogue", "duck_db": 12.0}},
    "10": {"class_type": "VBTimelineExport", "inputs": {"timeline": ["9", 0], "format": "otio",
                                                        "filename_prefix": "vibeboard/sequencer/cut"}},
    "11": {"class_type": "VBTimelineExport", "inputs": {"timeline": ["9", 0], "format": "fcp7_xml",
                                                        "filename_prefix": "vibeboard/sequencer/cut"}},
    "12": {"class_type": "VBTimelineExport", "inputs": {"timeline": ["9", 0], "format": "edl",
                                                        "filename_prefix": "vibeboard/sequencer/cut"}},
    "13": {"class_type": "VBRenderCut", "inputs": {"timeline": ["9", 0], "filename_prefix": "vibeboard/sequencer/cut",
                                                   "crf": 19, "preset": "veryfast"}},
    "14": {"class_type": "VBLoudnessNormalize", "inputs": {"audio": ["13", 2], "preset": "ebu_r128",
                                                           "save_report": True}},
    "15": {"class_type": "VBCaptions", "inputs": {"dialogue": DIALOGUE, "fps": 24.0,
                                                  "filename_prefix": "vibeboard/sequencer/captions"}},
    "16": {"class_type": "VBDeliverables", "inputs": {"timeline": ["9", 0], "loudness_preset": "ebu_r128",
                                                      "dialogue": DIALOGUE,
                                                      "filename_prefix": "vibeboard/sequencer/deliverables",
                                                      "burn_in": True}},
}
SEQUENCER_TITLES = {"1": "Shot sh010 (test clip; use a Shot Studio output)", "2": "Shot sh020 with a clap mark",
                    "3": "Shot sh030", "6": "sh020 with a 12-frame dissolve in", "8": "Music bed",
                    "9": "Music −6 dB, ducked under dialogue", "13": "Conform to MP4",
                    "16": "Deliverables folder"}

RECT = json.dumps([{"type": "rectangle", "points": [[0.3, 0.4], [0.6, 0.9]], "rgba": [1, 0, 0, 1]}])
DAILIES = {
    "1": clip(0, "vibeboard/dailies/sh010_take", frames=60),
    "2": clip(1, "vibeboard/dailies/sh010_take", frames=60, clap=12, audio="clap"),
    "3": {"class_type": "VBDailiesAddVersion", "inputs": {
        "project": "demo", "shot": "sh010", "media_path": ["1", 0],
        "recipe": json.dumps({"workflow": "shot_studio", "seed": 1, "prompt": "hero at the door"}),
        "parent_version": "", "run_qc": True}},
    "4": {"class_type": "VBDailiesAddVersion", "inputs": {
        "project": "demo", "shot": "sh010", "media_path": ["2", 0],
        "recipe": json.dumps({"workflow": "shot_studio", "seed": 2, "prompt": "hero at the door"}),
        "parent_version": ["3", 0], "run_qc": True}},
    "5": {"class_type": "VBDailiesAddNote", "inputs": {"project": "demo", "version_id": ["4", 0],
                                                       "text": "make the shirt red", "start_frame": 40,
                                                       "end_frame": 48, "shapes": RECT}},
    "6": {"class_type": "VBDailiesNoteToRerender", "inputs": {"project": "demo", "note_id": ["5", 0]}},
    "7": clip(2, "vibeboard/dailies/sh010_rerender", frames=60),
    "8": {"class_type": "VBDailiesLandRerender", "inputs": {"project": "demo", "rerender_id": ["6", 1],
                                                            "media_path": ["7", 0], "run_qc": True}},
    "9": {"class_type": "VBDailiesSetStatus", "inputs": {"project": "demo", "version_id": ["8", 0],
                                                         "status": "approved"}},
    "10": {"class_type": "VBDailiesExportNotes", "inputs": {"project": "demo", "shot": "sh010", "format": "otio",
                                                            "fps": 24.0, "filename_prefix": "vibeboard/dailies/notes",
                                                            "version_id": ["9", 0]}},
    "11": {"class_type": "VBDailiesExportNotes", "inputs": {"project": "demo", "shot": "sh010", "format": "csv",
                                                            "fps": 24.0, "filename_prefix": "vibeboard/dailies/notes",
                                                            "version_id": ["9", 0]}},
    "12": {"class_type": "VBDailiesExportNotes", "inputs": {"project": "demo", "shot": "sh010", "format": "edl",
                                                            "fps": 24.0, "filename_prefix": "vibeboard/dailies/notes",
                                                            "version_id": ["9", 0]}},
    "13": {"class_type": "VBDailiesExportReview", "inputs": {"project": "demo",
                                                             "filename_prefix": "vibeboard/dailies/review",
                                                             "version_id": ["9", 0]}},
}
DAILIES_TITLES = {"1": "Take 1 (test clip; use a Shot Studio output)", "2": "Take 2 (with a clap mark)",
                  "3": "v001 + automatic QC", "4": "v002 + automatic QC", "5": "Note with a drawn box, frames 40–48",
                  "6": "Note → re-render request (Qwen-Edit with the box as mask: needs weights to run)",
                  "7": "Stand-in for the re-render's output", "8": "Re-render lands as v003",
                  "9": "Approve v003 (resolves the note)", "13": "Static review folder (opens from disk)"}


def write(name, api, titles):
    from vibeboard_runner.registry import NodeRegistry
    from vibeboard_runner.ui_export import api_to_ui
    from vibeboard_runner.workflow import load_workflow

    reg = NodeRegistry.default()
    ui = api_to_ui(api, reg)
    for node in ui["nodes"]:
        if str(node["id"]) in titles:
            node["title"] = titles[str(node["id"])]
    back = load_workflow(ui, reg)
    assert {k: v["inputs"] for k, v in back.items()} == {k: v["inputs"] for k, v in api.items()}, "UI≠API"
    with open(os.path.join(ROOT, "workflows", f"{name}.json"), "w") as fh:
        json.dump(ui, fh, indent=2)
    with open(os.path.join(ROOT, "workflows", f"{name}.api.json"), "w") as fh:
        json.dump(api, fh, indent=2)
    print(f"wrote workflows/{name}.json and workflows/{name}.api.json")


if __name__ == "__main__":
    write("sequencer", SEQUENCER, SEQUENCER_TITLES)
    write("dailies", DAILIES, DAILIES_TITLES)
