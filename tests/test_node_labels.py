"""Error labels: every node names itself in errors through `vibeboard.common.runtime.node_label` (its display name,
exactly as on the canvas), never through a label string typed into its module. Checked over every node module
of the pack: no NodeInputError built from a string literal, and no display name (or the short form of one, e.g.
"Script Import" for "Script Import (Fountain/FDX)") written out anywhere but NODE_DISPLAY_NAME_MAPPINGS or a
module-level constant that feeds it. A behaviour check pins that a typed label can no longer drift from the
canvas name: a bad input names the node exactly as NODE_DISPLAY_NAME_MAPPINGS does."""
import ast
import importlib
import os

import pytest

from vibeboard.common import runtime

PACK = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "custom_nodes", "vibeboard")


def _node_modules():
    found = []
    for root, _dirs, files in os.walk(PACK):
        for name in sorted(files):
            if name.startswith("nodes") and name.endswith(".py"):
                rel = os.path.relpath(os.path.join(root, name), os.path.dirname(PACK))
                found.append(rel[:-3].replace(os.sep, "."))
    return sorted(found)


def _short_forms(display: str) -> set:
    """What a hand-typed label for `display` looks like: the name, without '(VibeBoard)', before ' — ' etc."""
    base = display.replace(" (VibeBoard)", "")
    forms = {display, base} | {base.split(sep)[0] for sep in (" — ", " → ", " (")}
    return {f.strip().lower() for f in forms if f.strip()}


MODULES = _node_modules()
LABELS = {}  # short form → display name, over the whole pack (a module may label another module's node)
for _name in MODULES:
    for _display in getattr(importlib.import_module(_name), "NODE_DISPLAY_NAME_MAPPINGS", {}).values():
        LABELS.update({form: _display for form in _short_forms(_display)})


def test_the_scan_sees_the_pack():
    assert len(MODULES) >= 15 and "vibeboard.scriptlab.nodes" in MODULES and len(LABELS) >= 80


@pytest.mark.parametrize("module", MODULES)
def test_no_node_module_types_its_own_error_label(module):
    path = os.path.join(os.path.dirname(PACK), *module.split(".")) + ".py"
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    allowed = set()  # the mapping itself, and module-level NAME = "..." constants that feed it
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign):
            allowed |= {id(n) for n in ast.walk(stmt.value)}
    typed = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "NodeInputError" \
                and node.args and isinstance(node.args[0], (ast.Constant, ast.JoinedStr)):
            typed.append(f"line {node.lineno}: NodeInputError({ast.unparse(node.args[0])}, …)")
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in allowed \
                and any(ch.isupper() for ch in node.value) and node.value.strip().lower() in LABELS:
            typed.append(f"line {node.lineno}: {node.value!r} (use runtime.node_label: "
                         f"{LABELS[node.value.strip().lower()]!r})")
    assert not typed, f"{module} types node labels by hand:\n" + "\n".join(typed)


def test_a_bad_input_names_the_node_as_the_canvas_does(tmp_path, monkeypatch):
    from vibeboard.scriptlab import nodes as scriptlab
    from vibeboard.sequencer import nodes as sequencer
    monkeypatch.setattr(runtime, "input_directory", lambda: str(tmp_path))
    with pytest.raises(runtime.NodeInputError) as err:
        scriptlab.VBScriptImport().load("no_such_script.fountain", "fountain-py")
    assert str(err.value).startswith("Script Import (Fountain/FDX): input 'script'")
    assert runtime.node_label(sequencer.VBTimelineNew) == "Timeline New (VibeBoard)"
