"""Which node classes exist, and their ComfyUI `/object_info` description."""
from __future__ import annotations

import logging
from typing import Dict, Optional


class NodeRegistry:
    def __init__(self, classes: Dict[str, type], display_names: Optional[Dict[str, str]] = None,
                 modules: Optional[Dict[str, str]] = None):
        self.classes = dict(classes)
        self.display_names = dict(display_names or {})
        self.modules = dict(modules or {})  # class -> python_module reported in object_info

    @classmethod
    def default(cls, embedded: bool = True) -> "NodeRegistry":
        """The VibeBoard pack, plus (embedded mode only) our versions of ComfyUI's core IO nodes."""
        import vibeboard
        classes, names, modules = {}, {}, {}
        if embedded:
            from . import core_nodes
            classes.update(core_nodes.NODE_CLASS_MAPPINGS)
            names.update(core_nodes.NODE_DISPLAY_NAME_MAPPINGS)
            modules.update({k: "nodes" for k in core_nodes.NODE_CLASS_MAPPINGS})
        classes.update(vibeboard.NODE_CLASS_MAPPINGS)
        names.update(vibeboard.NODE_DISPLAY_NAME_MAPPINGS)
        modules.update({k: "custom_nodes.vibeboard" for k in vibeboard.NODE_CLASS_MAPPINGS})
        return cls(classes, names, modules)

    def register(self, name: str, node_class: type, display_name: Optional[str] = None) -> None:
        self.classes[name] = node_class
        if display_name:
            self.display_names[name] = display_name

    def get(self, name: str) -> Optional[type]:
        return self.classes.get(name)

    def __contains__(self, name: str) -> bool:
        return name in self.classes

    def display_name(self, name: str) -> str:
        return self.display_names.get(name, name)

    def node_info(self, name: str) -> dict:
        """One node_def in ComfyUI's V1 `/object_info` shape (tuples become lists)."""
        node_class = self.classes[name]
        input_types = node_class.INPUT_TYPES()
        info = {"input": {}, "input_order": {}}
        for section in ("required", "optional", "hidden"):
            if section in input_types:
                info["input"][section] = {k: _jsonable(v) for k, v in input_types[section].items()}
                info["input_order"][section] = list(input_types[section].keys())
        outputs = list(getattr(node_class, "RETURN_TYPES", ()))
        out_is_list = getattr(node_class, "OUTPUT_IS_LIST", None)
        info["output"] = outputs
        info["output_is_list"] = list(out_is_list) if out_is_list else [False] * len(outputs)
        info["output_name"] = list(getattr(node_class, "RETURN_NAMES", None) or outputs)
        info["name"] = name
        info["display_name"] = self.display_name(name)
        info["description"] = getattr(node_class, "DESCRIPTION", "")
        info["python_module"] = self.modules.get(name, "custom_nodes.vibeboard")
        info["category"] = getattr(node_class, "CATEGORY", "sd")
        info["output_node"] = bool(getattr(node_class, "OUTPUT_NODE", False))
        if hasattr(node_class, "OUTPUT_TOOLTIPS"):
            info["output_tooltips"] = list(node_class.OUTPUT_TOOLTIPS)
        for flag in ("DEPRECATED", "EXPERIMENTAL"):
            if getattr(node_class, flag, False):
                info[flag.lower()] = True
        return info

    def object_info(self) -> dict:
        """Every node's info; one whose INPUT_TYPES fails is logged and left out, as ComfyUI does, so the
        frontend still loads."""
        info = {}
        for name in sorted(self.classes):
            try:
                info[name] = self.node_info(name)
            except Exception:
                logging.getLogger("vibeboard.registry").exception("object_info: node %s left out", name)
        return info


def _jsonable(value):
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
