"""Script Lab nodes (thin): import a screenplay, break it down into the asset DB, export sheets, plan renders.

VB_SCREENPLAY is a parsed script (scriptlab.screenplay.Screenplay); VB_BREAKDOWN is a handle on a revision in
the asset DB ({"db_path", "revision_id"}); VB_LLM is an LLM provider config (vibeboard.llm.LLMConfig).
"""
from __future__ import annotations

import json
import os

from ..common import runtime
from . import importers, pipeline

CATEGORY = "VibeBoard/Script Lab"
EXPORT_FORMATS = ["json", "csv", "xlsx", "fdx", "shot_list"]


def _script_path(node: str, name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise runtime.NodeInputError(node, "script", "give a screenplay file (.fountain, .fdx or .txt)")
    path = runtime.user_path(node, "script", name, runtime.input_directory())
    if not os.path.isfile(path):
        sample = pipeline.sample_path(name) if os.path.basename(name) == name else None
        if sample is None:
            raise runtime.NodeInputError(node, "script", f"file not found: {path} (put it in the input folder)")
        path = sample
    return path


def _db_path(node: str, value: str) -> str:
    value = (value or "").strip() or "script_lab/project.vbdb"
    return runtime.user_path(node, "db_path", value, runtime.output_directory())


def _output_path(node: str, prefix: str, ext: str) -> tuple:
    try:
        return runtime.unique_output_path(runtime.output_directory(), prefix, ext)
    except runtime.NodeInputError as exc:
        raise runtime.NodeInputError(node, "filename_prefix", str(exc).split(": ", 2)[-1]) from None


def _open_db(handle: dict):
    from ..assetdb import AssetDB
    return AssetDB(handle["db_path"])


class VBScriptImport:
    DESCRIPTION = ("Reads a screenplay (Fountain, Final Draft FDX or plain text) into scenes, speeches and action. "
                   "Notes and boneyard never become script text. Looks in the input folder, then the pack's samples.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("VB_SCREENPLAY", "STRING")
    RETURN_NAMES = ("screenplay", "summary")
    OUTPUT_TOOLTIPS = ("the parsed screenplay", "scene / speech / character counts")
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "script": ("STRING", {"default": pipeline.SAMPLE_SCRIPT,
                                  "tooltip": "Screenplay file name in the input folder, or a path"}),
            "fountain_parser": (importers.PARSERS, {"default": "fountain-py",
                                                    "tooltip": "Fountain parser (FDX uses its own reader)"})}}

    @classmethod
    def IS_CHANGED(cls, script="", **_):
        from ..media import files
        try:
            return files.file_fingerprint(_script_path(runtime.node_label(VBScriptImport), script))
        except (runtime.NodeInputError, OSError):
            return ""  # the run reports the missing file

    def load(self, script, fountain_parser):
        node = runtime.node_label(VBScriptImport)
        path = _script_path(node, script)
        try:
            play = importers.load_script(path, parser=fountain_parser)
        except (ValueError, OSError) as exc:
            raise runtime.NodeInputError(node, "script", str(exc)) from None
        play.path = path
        heads = sum(1 for e in play.elements if e.kind == "heading")
        cues = {e.name for e in play.elements if e.kind == "character"}
        text = (f"{play.title.get('Title', os.path.basename(path))}: {heads} scenes, {len(cues)} speaking "
                f"characters, {len(play.notes)} notes and {len(play.boneyards)} boneyard blocks kept out")
        return (play, text)


class VBLLMConfig:
    DESCRIPTION = ("An LLM endpoint for Script Lab / DirectorAgent / apiMedic: OpenAI-style chat (MiniMax /v1, vLLM, "
                   "SGLang, llama.cpp) or Anthropic-style messages (Claude, MiniMax /anthropic). The key is read "
                   "from the named environment variable at call time; it never enters the workflow file.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("VB_LLM",)
    RETURN_NAMES = ("llm",)
    OUTPUT_TOOLTIPS = ("the LLM endpoint (no key inside), for Script Lab nodes",)
    FUNCTION = "config"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "protocol": (["openai", "anthropic"], {"default": "openai", "tooltip": "Wire protocol of the endpoint"}),
            "base_url": ("STRING", {"default": "https://api.minimax.io/v1", "tooltip": "Endpoint base URL"}),
            "model": ("STRING", {"default": "MiniMax-M2.1", "tooltip": "Model name"}),
            "api_key_env": ("STRING", {"default": "MINIMAX_API_KEY",
                                       "tooltip": "Name of the environment variable holding the key"}),
            "temperature": ("FLOAT", {"default": 1.0, "min": 0.01, "max": 1.0, "step": 0.01,
                                      "tooltip": "MiniMax accepts (0, 1]; 1 is recommended"})}}

    def config(self, protocol, base_url, model, api_key_env, temperature):
        from ..llm import LLMConfig, LLMError
        try:
            return (LLMConfig(protocol=protocol, base_url=base_url.strip(), model=model.strip(),
                              api_key_env=api_key_env.strip(), temperature=float(temperature)),)
        except LLMError as exc:
            name = next((n for n in ("temperature", "base_url", "protocol") if n in str(exc)), "base_url")
            raise runtime.NodeInputError(runtime.node_label(VBLLMConfig), name, str(exc)) from None


class VBScriptBreakdown:
    DESCRIPTION = ("Breaks the script down into the project's asset database (SQLite): scenes with INT/EXT, set, "
                   "day/night, page eighths and script day; cast (speaking and not), extras, props, wardrobe, "
                   "vehicles, animals, effects, sound — each tag with its evidence span in the script. Re-running on "
                   "an edited script re-tags only the changed scenes and keeps user edits. Works with no LLM; "
                   "with one, its extra findings are stored as proposals for you to accept.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("VB_BREAKDOWN", "STRING")
    RETURN_NAMES = ("breakdown", "report")
    OUTPUT_TOOLTIPS = ("the breakdown handle (scenes and tags in the asset database)",
                       "what was tagged, re-tagged or kept")
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
                    "screenplay": ("VB_SCREENPLAY", {"tooltip": "From Script Import"}),
                    "db_path": ("STRING", {"default": "script_lab/project.vbdb",
                                           "tooltip": "Asset database file (relative paths: in the output folder)"})},
                "optional": {"llm": ("VB_LLM", {"tooltip": "Optional LLM for implied elements (proposals only)"})}}

    def run(self, screenplay, db_path, llm=None):
        from ..assetdb import AssetDB
        from . import breakdown as bd_mod
        node = runtime.node_label(VBScriptBreakdown)
        path = _db_path(node, db_path)
        bd = bd_mod.build_breakdown(screenplay)
        llm_note = ""
        with AssetDB(path) as db:
            if llm is not None:
                from ..llm import LLMError
                from . import llm_breakdown
                try:
                    provider = llm.provider()
                except LLMError as exc:
                    raise runtime.NodeInputError(node, "llm", str(exc)) from None
                report = llm_breakdown.propose(bd, screenplay, provider, db=db,
                                               skip_fingerprints=pipeline.unchanged_fingerprints(
                                                   db, bd.title.get("Title")))
                llm_note = f"\nLLM: {report['accepted_proposals']} proposals stored ({report['status']})"
            result = db.import_breakdown(bd, source_path=getattr(screenplay, "path", ""),
                                         source_format=screenplay.source_format, parser=screenplay.parser)
            text = pipeline.summary(db, result["revision_id"]) + llm_note
        return ({"db_path": path, "revision_id": result["revision_id"]}, text)


class VBBreakdownExport:
    DESCRIPTION = ("Writes the breakdown from the asset DB: JSON (everything), CSV/XLSX breakdown sheet, FDX with "
                   "Final Draft TagData, or the shot list for Shot Studio.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("path",)
    OUTPUT_TOOLTIPS = ("path of the written breakdown file",)
    FUNCTION = "export"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "breakdown": ("VB_BREAKDOWN", {"tooltip": "From Script Breakdown"}),
            "format": (EXPORT_FORMATS, {"default": "json", "tooltip": "What to write"}),
            "filename_prefix": ("STRING", {"default": "script_lab/breakdown", "tooltip": "Output name prefix"})}}

    @classmethod
    def IS_CHANGED(cls, **_):
        return float("nan")  # reads the asset DB, which users edit between runs: always re-read

    def export(self, breakdown, format, filename_prefix):
        from . import exports
        node = runtime.node_label(VBBreakdownExport)
        if format not in EXPORT_FORMATS:
            raise runtime.NodeInputError(node, "format", f"unknown format {format!r}; choose one of {EXPORT_FORMATS}")
        ext = {"shot_list": "json"}.get(format, format)
        path, subfolder, name = _output_path(node, filename_prefix, ext)
        with _open_db(breakdown) as db:
            rid = breakdown["revision_id"]
            if format == "xlsx":
                exports.to_xlsx(db, path, rid)
            else:
                if format == "json":
                    data = exports.dumps(exports.to_json(db, rid))
                elif format == "csv":
                    data = exports.to_csv(db, rid)
                elif format == "shot_list":
                    data = exports.dumps(exports.shot_list(db, rid))
                else:
                    play = _stored_screenplay(db, rid)
                    data = exports.to_fdx(play, db.tags(rid))
                with open(path, "w", encoding="utf-8", newline="") as handle:
                    handle.write(data)
        entry = {"filename": name, "subfolder": subfolder, "type": "output"}
        return {"ui": {"files": [entry], "text": [os.path.relpath(path, runtime.output_directory())]},
                "result": (path,)}


def _stored_screenplay(db, revision_id):
    """The screenplay of a stored revision, rebuilt from the elements and text kept in the DB."""
    from .screenplay import Element, Screenplay
    rev = db.revision(revision_id)
    return Screenplay(title=rev["title_page"], text=db.script_text(revision_id),
                      elements=[Element(**e) for e in db.script_elements(revision_id)],
                      source_format=rev.get("source_format") or "", parser=rev.get("parser") or "")


class VBGenerationStripboard:
    DESCRIPTION = ("Render plan: each scene's render tasks (workflow + model), ordered to minimise model swaps on the "
                   "farm, with estimated GPU-minutes and cost (figures in scriptlab/render_costs.json).")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("stripboard_json",)
    OUTPUT_TOOLTIPS = ("JSON: render tasks per scene in farm order, with GPU-minutes and cost",)
    FUNCTION = "plan"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "breakdown": ("VB_BREAKDOWN", {"tooltip": "From Script Breakdown"}),
            "usd_per_gpu_hour": ("FLOAT", {"default": 3.5, "min": 0.0, "max": 100.0, "step": 0.05,
                                           "tooltip": "What one GPU-hour of the farm costs"}),
            "filename_prefix": ("STRING", {"default": "script_lab/stripboard", "tooltip": "Output name prefix"})}}

    @classmethod
    def IS_CHANGED(cls, **_):
        return float("nan")  # reads the asset DB, which users edit between runs: always re-read

    def plan(self, breakdown, usd_per_gpu_hour, filename_prefix):
        from . import exports, stripboard
        costs = stripboard.load_costs()
        costs["usd_per_gpu_hour"] = float(usd_per_gpu_hour)
        with _open_db(breakdown) as db:
            board = stripboard.build(db, breakdown["revision_id"], costs)
        path, subfolder, name = _output_path(runtime.node_label(VBGenerationStripboard), filename_prefix, "json")
        text = exports.dumps(board)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        line = (f"{len(board['strips'])} scenes, {board['gpu_minutes']} GPU-min, ${board['cost_usd']}, model swaps "
                f"{board['script_order_swaps']} → {board['swaps']}")
        return {"ui": {"files": [{"filename": name, "subfolder": subfolder, "type": "output"}], "text": [line]},
                "result": (json.dumps(board),)}


class VBDirectorRoute:
    DESCRIPTION = ("DirectorAgent: a request in words (\"slow push-in on the detective\") → the studio workflow and its "
                   "parameters, as JSON. Rules and an offline embedding router decide; the LLM (optional) only when "
                   "the router is unsure. A request that needs a selection it lacks returns a question instead.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("STRING", "STRING")
    RETURN_NAMES = ("decision_json", "workflow")
    OUTPUT_TOOLTIPS = ("JSON: the chosen workflow, its parameters, or a question",
                       "name of the chosen studio workflow")
    FUNCTION = "route"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"request": ("STRING", {"multiline": True, "default": "slow push-in on the detective",
                                                    "tooltip": "What should happen, in words"}),
                             "selection_json": ("STRING", {"default": "{}", "tooltip":
                                                           'What is selected, e.g. {"clip": "shot12.mp4"}'})},
                "optional": {"llm": ("VB_LLM", {"tooltip": "Optional LLM for unsure requests"})}}

    def route(self, request, selection_json, llm=None):
        from . import director
        node = runtime.node_label(VBDirectorRoute)
        try:
            selection = json.loads(selection_json or "{}")
            if not isinstance(selection, dict):
                raise ValueError("must be a JSON object")
        except ValueError as exc:
            raise runtime.NodeInputError(node, "selection_json", f"not a JSON object: {exc}") from None
        try:
            decision = director.DirectorAgent(llm=llm.provider() if llm else None).route(request, selection)
        except RuntimeError as exc:
            raise runtime.NodeInputError(node, "request", str(exc)) from None
        text = json.dumps(decision.to_dict(), indent=2)
        summary = decision.question or f"{decision.workflow} ({decision.module}) {decision.params}"
        return {"ui": {"text": [summary]}, "result": (text, decision.workflow)}


NODE_CLASS_MAPPINGS = {
    "VBScriptImport": VBScriptImport,
    "VBLLMConfig": VBLLMConfig,
    "VBScriptBreakdown": VBScriptBreakdown,
    "VBBreakdownExport": VBBreakdownExport,
    "VBGenerationStripboard": VBGenerationStripboard,
    "VBDirectorRoute": VBDirectorRoute,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "VBScriptImport": "Script Import (Fountain/FDX)",
    "VBLLMConfig": "LLM Endpoint",
    "VBScriptBreakdown": "Script Breakdown → Asset DB",
    "VBBreakdownExport": "Breakdown Export",
    "VBGenerationStripboard": "Generation Stripboard",
    "VBDirectorRoute": "Director Route (request → workflow)",
}
