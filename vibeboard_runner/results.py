"""What one prompt run produced, in the shapes ComfyUI's /history uses."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from vibeboard.common.paths import is_inside


@dataclass
class ExecutionResult:
    prompt_id: str
    prompt: dict
    extra_data: dict = field(default_factory=dict)
    dirs: Dict[str, str] = field(default_factory=dict)
    status: str = "pending"  # success | error | interrupted | invalid
    outputs: Dict[str, dict] = field(default_factory=dict)  # node id -> ui dict
    error: Optional[dict] = None
    node_errors: Dict[str, dict] = field(default_factory=dict)
    validation_summary: str = ""
    executed: List[str] = field(default_factory=list)
    cached: List[str] = field(default_factory=list)
    cached_at_start: List[str] = field(default_factory=list)
    outputs_to_execute: List[str] = field(default_factory=list)
    timings: Dict[str, float] = field(default_factory=dict)
    messages: List[list] = field(default_factory=list)
    current_node: Optional[str] = None
    total_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "success"

    def history_entry(self, number: int = 0) -> dict:
        extra = {k: v for k, v in self.extra_data.items() if k not in ("auth_token_comfy_org", "api_key_comfy_org")}
        return strict_json({
            "prompt": [number, self.prompt_id, self.prompt, extra, list(self.outputs_to_execute)],
            "outputs": self.outputs,
            "status": {"status_str": "success" if self.ok else "error", "completed": self.ok,
                       "messages": self.messages},
            "meta": {nid: {"node_id": nid, "display_node": nid, "parent_node": None, "real_node_id": nid}
                     for nid in self.outputs},
        })

    def output_files(self) -> List[dict]:
        """Every file any output's ui dict references, whatever the key (images, videos, audio, files…)."""
        return files_in_ui(self.outputs, self.dirs)


def execution_error(prompt_id: str, exception_message: str, exception_type: str, node_id=None, node_type=None,
                    executed=(), traceback=(), current_inputs=None, current_outputs=(), **extra) -> dict:
    """The one error record: ComfyUI's `execution_error` message data, as history, job status, webhooks and
    the RunPod result carry it (a node failure, a crashed job, a job re-validated as invalid, a server restart)."""
    import time
    return {"prompt_id": prompt_id, "node_id": node_id, "node_type": node_type, "executed": list(executed),
            "exception_message": exception_message, "exception_type": exception_type,
            "traceback": list(traceback), "current_inputs": current_inputs or {},
            "current_outputs": list(current_outputs), **extra, "timestamp": int(time.time() * 1000)}


def strict_json(value):
    """A copy with NaN/±Infinity (a node's ui may report them) replaced by None: history is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def path_inside(base: str, path: str) -> bool:
    """True when path (after resolving '..' and links) lies inside base."""
    return is_inside(path, base)


def files_in_ui(outputs: dict, dirs: Dict[str, str]) -> List[dict]:
    """Which files a run wrote: every {filename, subfolder, type} entry of its ui dicts
    ({node: {key: [entry, ...]}}, any key: images, gifs, video, audio, files…), as rows
    {node, key, filename, subfolder, type, path}. Entries whose folder type is unknown, or whose path leaves that
    folder (symlinks followed), are skipped whatever a node reported; each (node, path) is listed once."""
    rows, seen = [], set()
    for node_id, key, item in ui_file_entries(outputs):
        kind = item.get("type") or "output"
        base = dirs.get(kind)
        subfolder = item.get("subfolder") or ""
        if base is None:
            continue
        path = os.path.join(base, subfolder, item["filename"])
        if not path_inside(base, path) or (node_id, path) in seen:
            continue
        seen.add((node_id, path))
        rows.append({"node": node_id, "key": key, "filename": item["filename"],
                     "subfolder": subfolder, "type": kind, "path": path})
    return rows


def ui_file_entries(outputs: dict):
    """(node_id, ui key, entry) for every well-formed file entry {filename: str, subfolder?: str, type?} of
    ui dicts {node: {key: [entry, ...]}}: the one walk over "what did this run write", local or remote."""
    for node_id, ui in (outputs or {}).items():
        if not isinstance(ui, dict):
            continue
        for key, items in ui.items():
            for item in items if isinstance(items, list) else []:
                if (isinstance(item, dict) and isinstance(item.get("filename"), str)
                        and isinstance(item.get("subfolder") or "", str)):
                    yield str(node_id), key, item




