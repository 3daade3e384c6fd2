"""The repo root loads as a ComfyUI custom node pack: no comfy.* import, no GPU needed."""
import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_loads_like_comfyui_does(tmp_path):
    # ComfyUI imports a pack folder by file location under a path-derived module name (nodes.py load_custom_node).
    script = textwrap.dedent(f"""
        import importlib.util, os, sys
        root = {ROOT!r}
        name = root.replace(".", "_x_")
        spec = importlib.util.spec_from_file_location(name, os.path.join(root, "__init__.py"),
                                                      submodule_search_locations=[root])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        import vibeboard
        assert not vibeboard.IMPORT_ERRORS, vibeboard.IMPORT_ERRORS
        assert not any(m == "comfy" or m.startswith("comfy.") for m in sys.modules), "imported comfy"
        mappings = module.NODE_CLASS_MAPPINGS
        assert len(mappings) >= 10 and all(k.startswith("VB") for k in mappings), sorted(mappings)
        assert set(module.NODE_DISPLAY_NAME_MAPPINGS) <= set(mappings)
        assert "LoadImage" not in mappings  # ComfyUI's own core nodes are used inside ComfyUI
        web = os.path.join(root, module.WEB_DIRECTORY)
        assert os.path.isdir(web), web
        for key, cls in mappings.items():
            types = cls.INPUT_TYPES()
            assert set(types) <= {{"required", "optional", "hidden"}}, key
            assert isinstance(cls.RETURN_TYPES, tuple) and hasattr(cls, cls.FUNCTION), key
            assert cls.CATEGORY.startswith("VibeBoard/"), key
            for section in ("required", "optional"):
                for input_name, spec in (types.get(section) or {{}}).items():
                    assert isinstance(spec, tuple), (key, input_name)
        print(len(mappings))
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env["CUDA_VISIBLE_DEVICES"] = ""
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, env=env,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_every_input_has_a_tooltip_and_every_node_a_description():
    import vibeboard
    missing = []
    for key, cls in vibeboard.NODE_CLASS_MAPPINGS.items():
        if not getattr(cls, "DESCRIPTION", ""):
            missing.append(f"{key}: DESCRIPTION")
        types = cls.INPUT_TYPES()
        for section in ("required", "optional"):
            for name, spec in (types.get(section) or {}).items():
                opts = spec[1] if len(spec) > 1 else {}
                if not opts.get("tooltip"):
                    missing.append(f"{key}.{name}")
    assert not missing, missing
