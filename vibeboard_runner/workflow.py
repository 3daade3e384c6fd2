"""Read workflow JSON (API format, UI format, a /prompt body or a PNG with embedded metadata) → API prompt.

UI → API follows the ComfyUI frontend's `graphToPrompt`: widget values are positional in declared input
order and include UI-only slots (the `control_after_generate` value after a seed, the upload button value
last, after all widgets); muted (mode 2) and bypassed (mode 4) nodes are dropped, links through bypassed
nodes, Reroute nodes and PrimitiveNode values are followed.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Tuple

from .graph import is_link, parse_spec

MODE_MUTED = 2
MODE_BYPASS = 4
VIRTUAL_NODES = {"Reroute", "PrimitiveNode", "Note", "MarkdownNote"}
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize", "increment-wrap"}
IMAGE_UPLOAD_OPTIONS = ("image_upload", "video_upload", "animated_image_upload")
UPLOAD_OPTIONS = IMAGE_UPLOAD_OPTIONS + ("audio_upload",)


class WorkflowFormatError(ValueError):
    """The file is not a workflow we can read; the message says why."""


def is_ui_format(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("nodes"), list) and "links" in data


def load_workflow(source, registry, max_bytes: int = 32 * 1024 * 1024) -> Dict[str, dict]:
    """Path, JSON text or dict → API prompt (a new dict; the source is not modified)."""
    data = _read_source(source, max_bytes)
    if isinstance(data, dict) and isinstance(data.get("prompt"), dict) and "class_type" not in data["prompt"]:
        data = data["prompt"]  # a POST /prompt body
    if is_ui_format(data):
        try:
            return ui_to_api(data, registry)
        except (KeyError, TypeError, AttributeError, IndexError) as exc:  # hand-edited or truncated files
            raise WorkflowFormatError(f"malformed UI workflow ({type(exc).__name__}: {exc}): expected "
                                      "nodes [{id, type, inputs, widgets_values}] and links") from None
    if isinstance(data, dict) and data and all(isinstance(v, dict) for v in data.values()):
        return normalise_api(data)
    raise WorkflowFormatError("not a ComfyUI workflow: expected API format {id: {class_type, inputs}} "
                              "or UI format {nodes, links}")


def _read_source(source, max_bytes):
    if isinstance(source, dict):
        return source
    text = None
    looks_like_json = isinstance(source, str) and source.lstrip()[:1] in "{[" and not os.path.isfile(source)
    if isinstance(source, (str, os.PathLike)) and not looks_like_json:
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise WorkflowFormatError(f"workflow file not found: {path}")
        if os.path.getsize(path) > max_bytes:
            raise WorkflowFormatError(f"workflow file is larger than {max_bytes} bytes: {path}")
        if path.lower().endswith(".png"):
            return _read_png_metadata(path)
        with open(path, "rb") as handle:
            text = _decode_text(handle.read(), path)
    else:
        text = _decode_text(source, "workflow") if isinstance(source, bytes) else source
    if len(text) > max_bytes:
        raise WorkflowFormatError(f"workflow JSON is larger than {max_bytes} bytes")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise WorkflowFormatError(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise WorkflowFormatError("invalid JSON: nested too deeply") from None


def _decode_text(raw: bytes, what: str) -> str:
    """JSON bytes → text: UTF-8 (with or without BOM) or UTF-16/32 (with BOM, as Windows tools save them)."""
    try:
        encoding = json.detect_encoding(raw)
        text = raw.decode(encoding)
    except (UnicodeDecodeError, LookupError) as exc:
        raise WorkflowFormatError(f"{what} is not UTF-8 or UTF-16 text ({exc.reason if hasattr(exc, 'reason') else exc}"
                                  "); save it as UTF-8") from None
    return text[1:] if text.startswith("\ufeff") else text


def _read_png_metadata(path):
    from PIL import Image
    with Image.open(path) as image:  # closed at once (Windows keeps open files locked)
        info = dict(image.info)
    for key in ("prompt", "workflow"):
        if key in info:
            try:
                return json.loads(info[key])
            except (json.JSONDecodeError, RecursionError) as exc:
                raise WorkflowFormatError(f"{path}: embedded '{key}' is not valid JSON ({exc})") from None
    raise WorkflowFormatError(f"{path} has no embedded ComfyUI workflow")


def normalise_api(prompt: dict) -> Dict[str, dict]:
    """String node ids, string link ids; everything else as given."""
    out = {}
    for node_id, node in prompt.items():
        node = dict(node)
        inputs = {}
        for name, value in (node.get("inputs") or {}).items():
            if is_link(value, raw=True):
                value = [str(value[0]), value[1]]
            inputs[name] = value
        node["inputs"] = inputs
        out[str(node_id)] = node
    return out


# --- UI format ----------------------------------------------------------------------------------

def widget_slots(input_types: dict) -> List[Tuple[str, str]]:
    """Widget positions in `widgets_values`: (input name, kind) with kind 'value', 'control' or 'upload'.

    As the ComfyUI frontend (1.27) lays them out: widgets in declared order (required, then optional), a
    `control_after_generate` slot right after its INT/COMBO, and the upload button that the frontend adds
    for the first *required* image/video upload combo (or a required `audio` combo with audio_upload) LAST,
    after the optional widgets too, because it is not in the node's input_order.
    """
    slots, upload = [], None
    for section in ("required", "optional"):
        for name, spec in (input_types.get(section) or {}).items():
            kind_type, opts = parse_spec(spec)
            if opts.get("forceInput") or opts.get("rawLink"):
                continue
            is_combo = isinstance(kind_type, (list, tuple)) or kind_type == "COMBO"
            if not (is_combo or kind_type in WIDGET_TYPES):
                continue
            slots.append((name, "value"))
            if opts.get("control_after_generate") or (kind_type == "INT" and name in ("seed", "noise_seed")):
                slots.append((name, "control"))
            if upload is None and section == "required" and is_combo and (
                    any(opts.get(key) for key in IMAGE_UPLOAD_OPTIONS)
                    or (name == "audio" and opts.get("audio_upload"))):
                upload = (name, "upload")
    if upload is not None:
        slots.append(upload)
    return slots


def _upload_index(values: list, slots: List[Tuple[str, str]], n_required: int) -> Optional[int]:
    """Where the upload button's value sits in a saved `widgets_values` (None: not saved).

    The current frontend saves it last; older frontends saved it after the required widgets, and some
    files (ours before this fix) right after the combo. The button's value is the literal "image" for
    image/video uploads ("" for audio), so the first candidate position holding that marker wins.
    """
    name = next(n for n, kind in slots if kind == "upload")
    combo_at = next(i for i, (n, kind) in enumerate(slots) if n == name and kind == "value")
    marker = upload_marker(name)
    for index in (len(values) - 1, n_required, combo_at + 1):
        if 0 <= index < len(values) and isinstance(values[index], str) and values[index] == marker:
            return index
    return len(values) - 1 if len(values) >= len(slots) else None


def upload_marker(name: str) -> str:
    """The value the frontend saves for the upload button: "image" (image and video uploads), "" (audio)."""
    return "" if name == "audio" else "image"


def _widget_values(node: dict, node_class) -> Dict[str, Any]:
    values = node.get("widgets_values")
    if values is None or node_class is None:
        return {}
    if isinstance(values, dict):  # some packs save widgets by name
        return {k: ({"__value__": v} if isinstance(v, list) else v)  # a list literal is not a link
                for k, v in values.items() if not isinstance(v, dict) or "__value__" in v}
    input_types = node_class.INPUT_TYPES()
    slots = widget_slots(input_types)
    values = list(values)
    if any(kind == "upload" for _, kind in slots):
        n_required = sum(1 for name, _ in slots if name in (input_types.get("required") or {}))
        n_required -= 1  # the upload slot itself is counted under its required combo
        upload_at = _upload_index(values, slots, n_required)
        if upload_at is not None:
            del values[upload_at]
    result, index = {}, 0
    for name, kind in slots:
        if kind == "upload":
            continue
        if index >= len(values):
            break
        value = values[index]
        if kind == "control":
            # Old saves may lack the control slot: only consume a value that looks like one.
            if isinstance(value, bool) or value in CONTROL_VALUES:
                index += 1
            continue
        result[name] = {"__value__": value} if isinstance(value, list) else value
        index += 1
    return result


def _links_table(workflow: dict) -> Dict[int, tuple]:
    table = {}
    for link in workflow.get("links") or []:
        if isinstance(link, dict):
            table[link["id"]] = (link["origin_id"], link["origin_slot"], link["target_id"], link["target_slot"],
                                 link.get("type"))
        elif isinstance(link, (list, tuple)) and len(link) >= 5:
            table[link[0]] = (link[1], link[2], link[3], link[4], link[5] if len(link) > 5 else None)
    return table


def ui_to_api(workflow: dict, registry) -> Dict[str, dict]:
    if (workflow.get("definitions") or {}).get("subgraphs"):
        raise WorkflowFormatError("subgraphs are not supported by the embedded runner yet: "
                                  "unpack them in ComfyUI (right-click → Unpack Subgraph) and save again")
    nodes = {node["id"]: node for node in workflow["nodes"]}
    links = _links_table(workflow)

    def resolve(link_id):
        """Follow a link to a real producer: ('link', id, slot), ('value', v) or None (input dropped).
        A loop, not recursion: a chain of thousands of Reroutes must not hit Python's recursion limit."""
        seen = set()
        while True:
            if link_id is None or link_id in seen:
                return None
            if link_id not in links:
                raise _DanglingLink(link_id)
            seen.add(link_id)
            origin_id, origin_slot, _tid, _tslot, link_type = links[link_id]
            origin = nodes.get(origin_id)
            if origin is None:
                return ("link", str(origin_id), origin_slot)  # validation reports the missing node
            if origin.get("type") == "Reroute":
                inputs = origin.get("inputs") or []
                if not inputs:
                    return None
                link_id = inputs[0].get("link")
                continue
            if origin.get("type") == "PrimitiveNode":
                values = origin.get("widgets_values") or []
                return ("value", values[0]) if values else None
            mode = origin.get("mode", 0)
            if mode == MODE_MUTED:
                return None
            if mode != MODE_BYPASS:
                return ("link", str(origin_id), origin_slot)
            link_id = _bypass_input(origin, origin_slot, link_type)

    prompt = {}
    for node_id, node in nodes.items():
        node_type = node.get("type")
        if node_type in VIRTUAL_NODES or node.get("mode", 0) in (MODE_MUTED, MODE_BYPASS):
            continue
        if isinstance(node_type, str) and node_type.startswith("workflow>"):
            raise WorkflowFormatError(f"node {node_id}: legacy group node '{node_type}' is not supported; "
                                      "convert it to nodes in ComfyUI and save again")
        node_class = registry.get(node_type)
        inputs = _widget_values(node, node_class)
        for slot in node.get("inputs") or []:
            name = (slot.get("widget") or {}).get("name") or slot.get("name")
            try:
                resolved = resolve(slot.get("link"))
            except _DanglingLink as exc:
                # ComfyUI's frontend would silently leave the input out and the graph would run without it;
                # a wire the file names but does not contain is a broken chain: say which node and input.
                raise WorkflowFormatError(
                    f"node {node_id} ({node_type}) input '{name}': it is wired through link {exc.args[0]}, "
                    "which the workflow's links do not contain (a hand-edited or truncated file); reconnect "
                    "the input in the editor and save again") from None
            if resolved is None:
                continue
            if resolved[0] == "value":
                value = resolved[1]
                inputs[name] = {"__value__": value} if isinstance(value, list) else value
            else:
                inputs[name] = [resolved[1], resolved[2]]
        entry = {"class_type": node_type, "inputs": inputs}
        title = node.get("title") or (registry.display_name(node_type) if node_class else node_type)
        entry["_meta"] = {"title": title}
        prompt[str(node_id)] = entry
    return prompt


class _DanglingLink(Exception):
    """A node input names a link id that the workflow's links table lacks."""


def _bypass_input(node: dict, output_slot: int, link_type) -> Optional[int]:
    """A bypassed node passes through the input of the same type (same index first, as the frontend does)."""
    inputs = node.get("inputs") or []
    outputs = node.get("outputs") or []
    wanted = link_type or (outputs[output_slot].get("type") if output_slot < len(outputs) else None)
    if output_slot < len(inputs) and inputs[output_slot].get("type") == wanted:
        return inputs[output_slot].get("link")
    for slot in inputs:
        if slot.get("type") == wanted and slot.get("link") is not None:
            return slot.get("link")
    return None


def apply_overrides(prompt: Dict[str, dict], overrides: Dict[str, Any]) -> Dict[str, dict]:
    """`{"NODE_ID.input": value}` → a copy of the prompt with those constants set (CLI --set, job API)."""
    prompt = json.loads(json.dumps(prompt))
    for key, value in overrides.items():
        node_id, _, input_name = key.rpartition(".")  # node ids may hold dots, input names do not
        if node_id not in prompt or not input_name:
            raise WorkflowFormatError(f"override '{key}': expected NODE_ID.input with an existing node id")
        prompt[node_id].setdefault("inputs", {})[input_name] = literal_or_link(value)
    return prompt


def literal_or_link(value):
    """An override value: `["node_id", slot]` stays a link; any other list is a literal (wrapped, as the
    frontend does), so `--set 5.sizes=[512,768]` is not read as a malformed link."""
    if isinstance(value, list) and not is_link(value):
        return {"__value__": value}
    return value
