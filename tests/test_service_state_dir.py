"""Runtime state (job database, local output store) lives in one state folder, not in the current directory;
the module graph has no cycles between the CLI and the remote backend or between the two learned-optics and VFX
node modules; storage prints nothing."""
import ast
import os

from vibeboard_runner import state

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_state_folder_defaults_next_to_output_and_env_overrides(tmp_path, monkeypatch):
    monkeypatch.delenv("VIBEBOARD_STATE_DIR", raising=False)
    out = tmp_path / "work" / "output"
    assert state.state_dir(str(out)) == str(tmp_path / "work" / "state")
    assert state.default_db_path(str(out)) == str(tmp_path / "work" / "state" / "vibeboard-jobs.sqlite")
    assert os.path.isdir(tmp_path / "work" / "state")
    assert state.default_store_dir(str(out)) == str(tmp_path / "work" / "state" / "vibeboard-store")
    monkeypatch.setenv("VIBEBOARD_STATE_DIR", str(tmp_path / "elsewhere"))
    assert state.default_db_path(str(out)) == str(tmp_path / "elsewhere" / "vibeboard-jobs.sqlite")


def test_database_of_an_older_version_is_kept(tmp_path, monkeypatch):
    monkeypatch.delenv("VIBEBOARD_STATE_DIR", raising=False)
    legacy = tmp_path / "vibeboard-jobs.sqlite"
    legacy.write_bytes(b"")
    assert state.default_db_path(str(tmp_path / "output")) == str(legacy)


def test_server_default_database_is_in_the_state_folder(tmp_path, monkeypatch):
    from vibeboard_runner.server import ServerConfig, VibeServer
    monkeypatch.delenv("VIBEBOARD_STATE_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    server = VibeServer(ServerConfig(output_dir=str(tmp_path / "o"), input_dir=str(tmp_path / "i"),
                                     temp_dir=str(tmp_path / "t")))
    try:
        assert server.store.path == str(tmp_path / "state" / "vibeboard-jobs.sqlite")
        assert not any(name.startswith("vibeboard-jobs") for name in os.listdir(tmp_path))
    finally:
        server.webhooks.close(timeout_s=0)
        server.store.close()


def _imports(path):
    """Module names imported anywhere in a file (relative ones resolved against its package)."""
    package = os.path.relpath(os.path.dirname(path), ROOT).replace(os.sep, ".")
    if package.startswith("custom_nodes."):
        package = package[len("custom_nodes."):]
    names = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                names.add(".".join(base + ([node.module] if node.module else [])))
            else:
                names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_no_import_cycles_and_no_printing_in_storage():
    remote = _imports(os.path.join(ROOT, "vibeboard_runner", "remote_comfyui.py"))
    assert "vibeboard_runner.cli" not in remote
    learned = _imports(os.path.join(ROOT, "custom_nodes", "vibeboard", "optics_learned", "nodes.py"))
    assert not any(name.startswith("vibeboard.vfx") for name in learned), learned
    storage = open(os.path.join(ROOT, "vibeboard_runner", "storage.py"), encoding="utf-8").read()
    assert "print(" not in storage and "sys.stdout" not in storage
