"""What one prompt run produced, in the shapes ComfyUI's /history uses."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional


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
        files = []
        for node_id, ui in self.outputs.items():
            for key, items in ui.items():
                for item in items if isinstance(items, list) else []:
                    if not isinstance(item, dict) or "filename" not in item:
                        continue
                    kind = item.get("type", "output")
                    base = self.dirs.get(kind, self.dirs.get("output", ""))
                    path = os.path.join(base, item.get("subfolder", "") or "", item["filename"])
                    if not path_inside(base, path):
                        continue  # never push a file from outside the folder, whatever a node reported
                    files.append({"node": node_id, "key": key, "filename": item["filename"],
                                  "subfolder": item.get("subfolder", ""), "type": kind, "path": path})
        return files


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
    base_real = os.path.realpath(base)
    try:
        return os.path.commonpath([os.path.realpath(path), base_real]) == base_real
    except ValueError:  # another drive on Windows
        return False
