"""ComfyUI's `progress_state` websocket message: every started node's state in one map.

The newer ComfyUI frontend draws per-node progress from it (`comfy_execution/progress.py` upstream): states
are running / finished / error, pending nodes are left out, and the whole map is re-sent on each change.
Built here from the executor's ordinary events, so the executor stays unaware of it.
"""
from __future__ import annotations

from typing import Dict, Optional


class ProgressState:
    def __init__(self, prompt_id: str):
        self.prompt_id = prompt_id
        self.nodes: Dict[str, dict] = {}
        self.running: Optional[str] = None

    def _set(self, node: str, state: str, value: float, maximum: float) -> None:
        self.nodes[node] = {"value": value, "max": maximum, "state": state, "node_id": node,
                            "prompt_id": self.prompt_id, "display_node_id": node, "parent_node_id": None,
                            "real_node_id": node}

    def _finish_running(self, state: str = "finished") -> None:
        if self.running is not None:
            entry = self.nodes[self.running]
            value = entry["max"] if state == "finished" else entry["value"]
            self._set(self.running, state, value, entry["max"])
            self.running = None

    def update(self, event: str, data: dict) -> Optional[dict]:
        """The message data to send after `event`, or None when nothing changed."""
        if event == "execution_cached":
            for node in data.get("nodes") or []:
                self._set(str(node), "finished", 1, 1)
            if not data.get("nodes"):
                return None
        elif event == "executing":
            node = data.get("node")
            self._finish_running()
            if node is not None:
                self._set(str(node), "running", 0, 1)
                self.running = str(node)
        elif event == "progress":
            node = str(data.get("node"))
            self._set(node, "running", data.get("value", 0), data.get("max", 1))
            self.running = node
        elif event == "executed":
            if self.running == str(data.get("node")):
                self._finish_running()
            else:
                return None
        elif event == "execution_success":
            self._finish_running()
        elif event == "execution_error":
            self._finish_running("error")
        elif event == "execution_interrupted":
            self.running = None
            return None
        else:
            return None
        return {"prompt_id": self.prompt_id, "nodes": {k: dict(v) for k, v in self.nodes.items()}}
