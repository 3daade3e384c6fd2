"""Every node the runner registers (the pack and the embedded core twins) explains itself in the editor: a
DESCRIPTION, a tooltip on every input and on every output, and a description that says so when the node needs
model weights."""
import json
import os

from vibeboard_runner.registry import NodeRegistry

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REGISTRY_JSON = os.path.join(ROOT, "custom_nodes", "vibeboard", "models", "registry.json")
# Handles that only exist once weights are loaded: a node that takes or returns one needs weights.
MODEL_HANDLES = {"VB_WAN", "VB_GENFOCUS", "VB_REFOCUS", "VB_QWEN_EDIT", "VB_SAM"}


def _classes():
    return NodeRegistry.default(embedded=True).classes


def _input_types(cls):
    types = cls.INPUT_TYPES()
    for section in ("required", "optional"):
        for name, spec in (types.get(section) or {}).items():
            yield name, spec


def test_every_node_has_a_description_and_every_input_a_tooltip():
    missing = []
    for key, cls in sorted(_classes().items()):
        if not (getattr(cls, "DESCRIPTION", "") or "").strip():
            missing.append(f"{key}: DESCRIPTION")
        for name, spec in _input_types(cls):
            opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            if not (opts.get("tooltip") or "").strip():
                missing.append(f"{key}.{name}: tooltip")
    assert not missing, missing


def test_every_output_has_a_tooltip():
    missing = []
    for key, cls in sorted(_classes().items()):
        outputs = tuple(getattr(cls, "RETURN_TYPES", ()))
        tips = tuple(getattr(cls, "OUTPUT_TOOLTIPS", ()) or ())
        if len(tips) != len(outputs):
            missing.append(f"{key}: {len(outputs)} outputs, {len(tips)} OUTPUT_TOOLTIPS")
            continue
        for index, tip in enumerate(tips):
            if not isinstance(tip, str) or not tip.strip():
                names = getattr(cls, "RETURN_NAMES", None) or outputs
                missing.append(f"{key} output {index} ({names[index]}): empty tooltip")
    assert not missing, "\n".join(missing)


def test_object_info_carries_the_output_tooltips():
    registry = NodeRegistry.default(embedded=True)
    info = registry.node_info("VBBokehRender")
    assert len(info["output_tooltips"]) == len(info["output"]) == 2
    assert info["output_tooltips"][0]


def test_nodes_that_need_weights_say_so():
    registry_nodes = set()
    for entry in json.load(open(REGISTRY_JSON))["models"].values():
        registry_nodes.update(entry.get("nodes") or [])
    silent = []
    for key, cls in sorted(_classes().items()):
        types = {spec[0] for _, spec in _input_types(cls) if isinstance(spec[0], str)}
        types |= {t for t in getattr(cls, "RETURN_TYPES", ()) if isinstance(t, str)}
        needs = key in registry_nodes or bool(types & MODEL_HANDLES)
        if needs and "weights" not in cls.DESCRIPTION.lower():
            silent.append(key)
    assert not silent, f"these nodes need model weights but their DESCRIPTION does not say so: {silent}"
    assert "VBWanModelLoader" in registry_nodes  # the rule above is not vacuous
