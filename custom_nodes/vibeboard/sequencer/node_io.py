"""Input/output helpers shared by the Sequencer and Dailies nodes: JSON widgets, media paths, output files.
Every error names the node and the input (NodeInputError)."""
from __future__ import annotations

import json
import os
import re

from ..common import paths, runtime
from ..common.runtime import NodeInputError


def json_input(node: str, input_name: str, text, default=None, kind=dict):
    """A JSON widget: empty → `default`; otherwise it must parse to `kind`."""
    if isinstance(text, kind):
        return text
    text = (text or "").strip()
    if not text:
        return {} if default is None and kind is dict else default
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NodeInputError(node, input_name, f"not valid JSON: {exc.msg} at line {exc.lineno} column "
                             f"{exc.colno}") from None
    if not isinstance(value, kind):
        raise NodeInputError(node, input_name, f"expected a JSON {kind.__name__}, got {type(value).__name__}")
    return value


def media_file(node: str, input_name: str, value: str) -> str:
    """A media path typed or linked into a node: absolute, or relative to the output folder (where generated
    clips land); confined by the server's path policy; must exist."""
    if not (value or "").strip():
        raise NodeInputError(node, input_name, "no file given")
    path = runtime.user_path(node, input_name, value, runtime.output_directory())
    if not os.path.isfile(path):
        raise NodeInputError(node, input_name, f"file not found: '{path}'")
    return path


def output_file(node: str, prefix: str, ext: str):
    """(path, ui entry) of the next free output file for `prefix`."""
    path, subfolder, name = runtime.unique_output_path(runtime.output_directory(), prefix, ext, node)
    return path, {"filename": name, "subfolder": subfolder, "type": "output"}


def output_folder(node: str, prefix: str):
    """A new folder `prefix_NNNNN_` under the output folder (a counter like ComfyUI's files)."""
    root = os.path.realpath(runtime.output_directory())
    base = os.path.abspath(os.path.join(root, prefix))
    if os.path.commonpath([base, root]) != root or base == root:
        raise NodeInputError(node, "filename_prefix", f"'{prefix}' points outside the output folder")
    try:  # resolved: a symlinked sub-folder of output/ must not lead the new folder out of it
        paths.makedirs_inside(root, os.path.dirname(base))
    except paths.PathEscapeError:
        raise NodeInputError(node, "filename_prefix", f"'{prefix}' leads out of the output folder through a "
                                                      "symbolic link") from None
    for counter in range(1, 100000):
        folder = f"{base}_{counter:05}_"
        try:
            os.makedirs(folder, exist_ok=False)  # exclusive: two runs never share a folder
        except FileExistsError:
            continue
        return folder, ui_file(folder)
    raise NodeInputError(node, "filename_prefix", f"no free folder name for '{prefix}'")


def ui_file(path: str) -> dict:
    folder, name = os.path.split(os.path.realpath(path))
    sub = os.path.relpath(folder, os.path.realpath(runtime.output_directory()))
    return {"filename": name, "subfolder": "" if sub == "." else sub, "type": "output"}


def project_name(node: str, value: str) -> str:
    """A Dailies project name: letters, digits, '-', '_' (it names a file in output/vibeboard/dailies/)."""
    name = (value or "").strip()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", name):
        raise NodeInputError(node, "project", f"'{value}' is not a project name: use letters, digits, '-', '_' "
                             "(at most 64, no path)")
    return name
