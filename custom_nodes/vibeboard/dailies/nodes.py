"""Dailies nodes: thin wrappers over store.py (versions, notes, annotations), qc.py, rerender.py and
review_export.py. A project is one SQLite file, output/vibeboard/dailies/<project>.sqlite."""
from __future__ import annotations

import json
import os
import re

from ..common import runtime
from ..common.runtime import NodeInputError
from ..media import files
from ..media import video as video_io
from ..sequencer import node_io
from .store import STATUSES, DailiesError, DailiesStore

CATEGORY = "VibeBoard/Dailies"


def open_store(node: str, project: str) -> DailiesStore:
    name = node_io.project_name(node, project)
    folder = os.path.join(runtime.output_directory(), "vibeboard", "dailies")
    os.makedirs(folder, exist_ok=True)
    return DailiesStore(files.safe_join(folder, f"{name}.sqlite"))


def run_qc_on(node: str, store: DailiesStore, version: dict):
    """Automatic QC of a new version: machine notes stored, the focus report saved like VFX Suite's Focus
    Inspect saves it. Returns (report, ui file entries)."""
    from . import qc
    report = qc.inspect_version(version["path"], version["shot"])
    qc.attach(store, version["id"], report)
    files_ = []
    if report.get("focus"):
        safe = re.sub(r"[^\w-]+", "_", version["shot"]).strip("_") or "shot"
        focus_path, entry = node_io.output_file(node, f"vibeboard/dailies/focus_{safe}", "json")
        with open(focus_path, "w", encoding="utf-8") as handle:
            json.dump(report["focus"], handle, indent=1)
        files_.append(entry)
    return report, files_


_PROJECT = ("STRING", {"default": "demo", "tooltip": "Dailies project (letters, digits, - and _)"})


class VBDailiesAddVersion:
    DESCRIPTION = ("Add a job output as the next version (v001, v002, …) of a shot, with its recipe and parent; "
                   "runs automatic QC (black/frozen frames, A/V offset, loudness, flicker, focus) and stores the "
                   "findings as machine notes. The same file added again returns the existing version.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("STRING", "STRING")
    RETURN_NAMES = ("version_id", "qc_report")
    OUTPUT_TOOLTIPS = ("id of the version (existing one when the same file was added before)",
                       "JSON: the automatic QC findings")
    OUTPUT_NODE = True
    FUNCTION = "add"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "project": _PROJECT,
            "shot": ("STRING", {"default": "sh010", "tooltip": "shot name (the version stack)"}),
            "media_path": ("STRING", {"default": "", "tooltip": "the job's output file (absolute or inside the "
                                      "output folder)"}),
            "recipe": ("STRING", {"default": "{}", "multiline": True, "tooltip": "generation recipe (JSON)"}),
            "parent_version": ("STRING", {"default": "", "tooltip": "version this one was made from (optional)"}),
            "run_qc": ("BOOLEAN", {"default": True, "tooltip": "run automatic QC and store machine notes"}),
        }}

    def add(self, project, shot, media_path, recipe, parent_version, run_qc):
        node = runtime.node_label(VBDailiesAddVersion)
        store = open_store(node, project)
        path = node_io.media_file(node, "media_path", media_path)
        for version in store.stack(shot):
            if version["path"] == os.path.abspath(path):
                return {"ui": {"text": [f"{version['id']} already holds this file"]}, "result": (version["id"], "{}")}
        info = video_io.probe_video(path)
        try:
            version = store.add_version(shot, path, node_io.json_input(node, "recipe", recipe),
                                        parent_version.strip() or None, info.frame_count, float(info.frame_rate))
        except DailiesError as exc:
            raise NodeInputError(node, "parent_version" if "parent" in str(exc) else "shot", str(exc)) from None
        report, ui_files = run_qc_on(node, store, version) if run_qc else ({}, [])
        text = json.dumps(report, indent=1, default=float)
        return {"ui": {"text": [f"{version['id']}: {len(report.get('notes', []))} QC note(s)"], "files": ui_files},
                "result": (version["id"], text)}


class VBDailiesSetStatus:
    DESCRIPTION = ("Review decision on a version: in_review, approved or needs_revision. The latest approved "
                   "version of each shot is what Assemble Cut uses; approving a re-render resolves its note.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("version_id",)
    OUTPUT_TOOLTIPS = ("id of the version whose status was set",)
    OUTPUT_NODE = True  # it changes the project: run it even when nothing consumes its output
    FUNCTION = "set"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "project": _PROJECT,
            "version_id": ("STRING", {"default": "", "tooltip": "e.g. sh010_v002"}),
            "status": (list(STATUSES), {"default": "approved", "tooltip": "review decision"}),
        }}

    def set(self, project, version_id, status):
        node = runtime.node_label(VBDailiesSetStatus)
        try:
            return (open_store(node, project).set_status(version_id.strip(), status)["id"],)
        except DailiesError as exc:
            raise NodeInputError(node, "version_id" if "version" in str(exc) else "status", str(exc)) from None


class VBDailiesAddNote:
    DESCRIPTION = ("A timecoded review note on a version's frames start..end, with optional drawn shapes "
                   "(JSON list of {type: rectangle|arrow|freehand|text|ellipse|line, points: [[x, y], …] on 0..1 "
                   "coordinates, upper-left origin, rgba?, text?}).")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("INT",)
    RETURN_NAMES = ("note_id",)
    OUTPUT_TOOLTIPS = ("id of the stored note",)
    OUTPUT_NODE = True  # it changes the project: run it even when nothing consumes its output
    FUNCTION = "note"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "project": _PROJECT,
            "version_id": ("STRING", {"default": "", "tooltip": "the version the note is about"}),
            "text": ("STRING", {"default": "", "multiline": True, "tooltip": "the note"}),
            "start_frame": ("INT", {"default": 0, "min": 0, "max": 1_000_000, "tooltip": "first frame"}),
            "end_frame": ("INT", {"default": 0, "min": 0, "max": 1_000_000, "tooltip": "last frame"}),
            "shapes": ("STRING", {"default": "[]", "multiline": True, "tooltip": "annotations (JSON list)"}),
        }}

    def note(self, project, version_id, text, start_frame, end_frame, shapes):
        node = runtime.node_label(VBDailiesAddNote)
        store = open_store(node, project)
        drawn = node_io.json_input(node, "shapes", shapes, default=[], kind=list)
        try:
            from .store import check_shape
            for shape in drawn:
                check_shape(shape)
        except DailiesError as exc:
            raise NodeInputError(node, "shapes", str(exc)) from None
        try:
            note = store.add_note(version_id.strip(), text, start_frame, end_frame)
            for shape in drawn:
                store.add_annotation(version_id.strip(), shape, start_frame, end_frame, note["id"])
        except DailiesError as exc:
            name = "version_id" if "version" in str(exc) else "text" if "text" in str(exc) else "start_frame"
            raise NodeInputError(node, name, str(exc)) from None
        return (int(note["id"]),)


class VBDailiesNoteToRerender:
    DESCRIPTION = ("Turn a note into a proposed re-render job: the version's recipe plus the changed inputs "
                   "(Qwen-Edit with the drawn region as mask on the note's frames, InfCam for a camera note, else "
                   "a new seed with the note in the prompt). Land its output with Dailies Land Re-render.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("STRING", "INT")
    RETURN_NAMES = ("request", "rerender_id")
    OUTPUT_TOOLTIPS = ("JSON: the proposed re-render job (recipe plus changed inputs)",
                       "id of the re-render record, for Dailies Land Re-render")
    OUTPUT_NODE = True
    FUNCTION = "propose"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"project": _PROJECT,
                             "note_id": ("INT", {"default": 1, "min": 1, "max": 1 << 30, "tooltip": "the note"})}}

    def propose(self, project, note_id):
        node = runtime.node_label(VBDailiesNoteToRerender)
        from . import rerender
        try:
            saved = rerender.propose(open_store(node, project), note_id)
        except DailiesError as exc:
            raise NodeInputError(node, "note_id", str(exc)) from None
        text = json.dumps(saved["request"], indent=1)
        return {"ui": {"text": [f"re-render {saved['id']}: {saved['request']['route']}"]},
                "result": (text, int(saved["id"]))}


class VBDailiesLandRerender:
    DESCRIPTION = ("The output of a re-render job becomes the next version of the same shot (parent = the noted "
                   "version, linked to the note, status in_review).")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("version_id",)
    OUTPUT_TOOLTIPS = ("id of the new version made from the re-render",)
    OUTPUT_NODE = True  # it changes the project: run it even when nothing consumes its output
    FUNCTION = "land"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "project": _PROJECT,
            "rerender_id": ("INT", {"default": 1, "min": 1, "max": 1 << 30, "tooltip": "from Note To Re-render"}),
            "media_path": ("STRING", {"default": "", "tooltip": "the job's output file"}),
            "run_qc": ("BOOLEAN", {"default": True, "tooltip": "run automatic QC and store machine notes"}),
        }}

    def land(self, project, rerender_id, media_path, run_qc=True):
        node = runtime.node_label(VBDailiesLandRerender)
        store = open_store(node, project)
        path = node_io.media_file(node, "media_path", media_path)
        info = video_io.probe_video(path)
        try:
            version = store.land_rerender(rerender_id, path, info.frame_count, float(info.frame_rate))
        except DailiesError as exc:
            raise NodeInputError(node, "rerender_id", str(exc)) from None
        report, ui_files = run_qc_on(node, store, version) if run_qc else ({}, [])
        return {"ui": {"text": [f"{version['id']}: {len(report.get('notes', []))} QC note(s)"], "files": ui_files},
                "result": (version["id"],)}


class VBDailiesExportNotes:
    DESCRIPTION = ("Export a shot's versions, notes and annotations: OTIO (notes as markers, annotations as "
                   "OpenRV-style Annotation/Paint effects), CSV, or a marker EDL for Resolve.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("path",)
    OUTPUT_TOOLTIPS = ("path of the written OTIO / CSV / EDL file",)
    OUTPUT_NODE = True
    FUNCTION = "export"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "project": _PROJECT,
            "shot": ("STRING", {"default": "sh010", "tooltip": "shot whose notes to export"}),
            "format": (["otio", "csv", "edl"], {"default": "otio", "tooltip": "export format"}),
            "fps": ("FLOAT", {"default": 24.0, "min": 1.0, "max": 120.0, "step": 0.001, "tooltip": "timecode rate"}),
            "filename_prefix": ("STRING", {"default": "vibeboard/dailies/notes", "tooltip": "name prefix"}),
        }, "optional": {
            "version_id": ("STRING", {"forceInput": True, "tooltip": "export this version's shot instead of "
                                      "`shot` (link it so the export runs after the review steps)"}),
        }}

    def export(self, project, shot, format, fps, filename_prefix, version_id=None):
        node = runtime.node_label(VBDailiesExportNotes)
        try:
            from . import review_export
        except ImportError as exc:
            raise NodeInputError(node, "format", f"needs OpenTimelineIO ({exc.name or exc}): pip install "
                                 "vibeboard[sequencer]") from None
        store = open_store(node, project)
        if version_id:
            try:
                shot = store.version(version_id.strip())["shot"]
            except DailiesError as exc:
                raise NodeInputError(node, "version_id", str(exc)) from None
        if not store.stack(shot):
            raise NodeInputError(node, "shot", f"project '{project}' has no versions of shot '{shot}'")
        try:
            text = review_export.export_text(store, shot, format, fps)
        except DailiesError as exc:
            raise NodeInputError(node, "format", str(exc)) from None
        path, entry = node_io.output_file(node, filename_prefix, format)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        return {"ui": {"files": [entry]}, "result": (path,)}


class VBDailiesExportReview:
    DESCRIPTION = ("Export the project's review as a static folder (index.html + data.js + media/) that opens from "
                   "disk in any browser: version stacks, player with compare modes, notes and annotations "
                   "(read-only; reviewing with notes needs `vibeboard serve`).")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("index",)
    OUTPUT_TOOLTIPS = ("path of the static review's index.html",)
    OUTPUT_NODE = True
    FUNCTION = "export"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "project": _PROJECT,
            "filename_prefix": ("STRING", {"default": "vibeboard/dailies/review", "tooltip": "folder name prefix"}),
        }, "optional": {
            "version_id": ("STRING", {"forceInput": True, "tooltip": "link it so the export runs after the "
                                      "review steps"}),
        }}

    def export(self, project, filename_prefix, version_id=None):
        node = runtime.node_label(VBDailiesExportReview)
        from .review_server import export_static
        store = open_store(node, project)
        if not store.shots():
            raise NodeInputError(node, "project", f"project '{project}' has no versions yet")
        folder, _ = node_io.output_folder(node, filename_prefix)
        index = export_static(store, folder)
        return {"ui": {"files": [node_io.ui_file(index)]}, "result": (index,)}


def _mount_review_page():
    # ComfyUI has imported its `server` module before it loads custom nodes; elsewhere this is a no-op.
    try:
        from .review_server import mount_in_comfyui
        mount_in_comfyui()
    except Exception as exc:  # the review page is optional; the nodes work without it
        import logging
        logging.getLogger("vibeboard").warning("Dailies review page not mounted in ComfyUI: %s", exc)


_mount_review_page()

NODE_CLASS_MAPPINGS = {
    "VBDailiesAddVersion": VBDailiesAddVersion,
    "VBDailiesSetStatus": VBDailiesSetStatus,
    "VBDailiesAddNote": VBDailiesAddNote,
    "VBDailiesNoteToRerender": VBDailiesNoteToRerender,
    "VBDailiesLandRerender": VBDailiesLandRerender,
    "VBDailiesExportNotes": VBDailiesExportNotes,
    "VBDailiesExportReview": VBDailiesExportReview,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "VBDailiesAddVersion": "Dailies Add Version (VibeBoard)",
    "VBDailiesSetStatus": "Dailies Set Status (VibeBoard)",
    "VBDailiesAddNote": "Dailies Add Note (VibeBoard)",
    "VBDailiesNoteToRerender": "Dailies Note To Re-render (VibeBoard)",
    "VBDailiesLandRerender": "Dailies Land Re-render (VibeBoard)",
    "VBDailiesExportNotes": "Dailies Export Notes (VibeBoard)",
    "VBDailiesExportReview": "Dailies Export Review (VibeBoard)",
}
