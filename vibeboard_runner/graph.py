"""Graph primitives, each with one home (as ComfyUI's comfy_execution/graph_utils.py and get_input_info):
what a link is, and what a node class declares about an input. Validation, execution, UI export, workflow
loading and the server's shape checks all ask here."""
from __future__ import annotations

from typing import Dict, Tuple

SECTIONS = ("required", "optional")


def is_link(value, raw: bool = False) -> bool:
    """`[source_node_id, output_slot]`. Normalised prompts use string ids; `raw=True` also accepts the integer
    ids of a prompt as a client sent it (before `workflow.normalise_api`)."""
    if not (isinstance(value, list) and len(value) == 2):
        return False
    source, slot = value
    id_ok = isinstance(source, str) or (raw and isinstance(source, int) and not isinstance(source, bool))
    return id_ok and isinstance(slot, int) and not isinstance(slot, bool)


def parse_spec(spec) -> Tuple[object, dict]:
    """One declared input `(TYPE, {options})` / `(TYPE,)` / `TYPE` → (type, options)."""
    spec = spec if isinstance(spec, (list, tuple)) else (spec,)
    return spec[0], (spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {})


def declared_inputs(node_class) -> Dict[str, Tuple[object, dict, str]]:
    """{name: (type, options, section)} for the required and optional inputs, in declaration order."""
    types = node_class.INPUT_TYPES()
    out = {}
    for section in SECTIONS:
        for name, spec in (types.get(section) or {}).items():
            kind, opts = parse_spec(spec)
            out[name] = (kind, opts, section)
    return out


def input_spec(node_class, name):
    """(type, options, section) of one input; (None, {}, None) when the class does not declare it."""
    return declared_inputs(node_class).get(name, (None, {}, None))


def lazy_inputs(node_class) -> set:
    return {name for name, (_kind, opts, _section) in declared_inputs(node_class).items() if opts.get("lazy")}


def hidden_inputs(node_class) -> dict:
    """{name: kind} of the hidden inputs (PROMPT, EXTRA_PNGINFO, UNIQUE_ID, …) the host fills in."""
    return dict(node_class.INPUT_TYPES().get("hidden") or {})
