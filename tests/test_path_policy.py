"""File paths typed into nodes: anywhere locally, only the host's folders on a server."""
import os

import pytest

from vibeboard.common import runtime


@pytest.fixture
def dirs(tmp_path):
    for kind in ("output", "input", "temp", "models"):
        (tmp_path / kind).mkdir()
    runtime.set_host_dirs(output=str(tmp_path / "output"), input=str(tmp_path / "input"),
                          temp=str(tmp_path / "temp"), models=str(tmp_path / "models"))
    (tmp_path / "input" / "clip.txt").write_text("x")
    (tmp_path / "secret.txt").write_text("s")
    os.symlink(tmp_path / "secret.txt", tmp_path / "input" / "link.txt")
    return tmp_path


def test_unrestricted_allows_any_path(dirs):
    assert not runtime.paths_restricted()  # the process default: a local user
    assert runtime.user_path("N", "p", str(dirs / "secret.txt"), str(dirs / "input")) == str(dirs / "secret.txt")
    assert runtime.user_path("N", "p", "clip.txt", str(dirs / "input")) == str(dirs / "input" / "clip.txt")


def test_restricted_refuses_outside_and_symlink_escapes(dirs):
    with runtime.path_policy(True):
        assert runtime.user_path("N", "p", "clip.txt", str(dirs / "input")).endswith("clip.txt")
        assert runtime.user_path("N", "p", str(dirs / "models" / "m.safetensors"), "/").endswith("m.safetensors")
        for bad in (str(dirs / "secret.txt"), "../secret.txt", "link.txt", "/etc/passwd"):
            with pytest.raises(runtime.NodeInputError, match=r"N: input 'p': .*outside the folders"):
                runtime.user_path("N", "p", bad, str(dirs / "input"))
    assert not runtime.paths_restricted()  # only inside the block


def test_load_video_path_override_is_restricted_on_servers(dirs):
    from vibeboard.media import nodes as media_nodes
    with runtime.path_policy(True), pytest.raises(runtime.NodeInputError, match="video_path"):
        media_nodes.resolve_video(video_path="/etc/passwd")
    with pytest.raises(runtime.NodeInputError, match="not found"):
        media_nodes.resolve_video(video_path=str(dirs / "missing.mp4"))


def test_server_applies_its_policy_per_call_not_process_wide(tmp_path):
    from vibeboard_runner.server import ServerConfig, VibeServer
    closed = VibeServer(ServerConfig(output_dir=str(tmp_path / "o"), input_dir=str(tmp_path / "i"),
                                     temp_dir=str(tmp_path / "t"), db_path=str(tmp_path / "db.sqlite")))
    assert closed.executor.restrict_paths is True
    assert closed._with_policies(runtime.paths_restricted) is True  # validation, job inputs: the server's policy
    assert not runtime.paths_restricted()  # nothing process-wide changed: no test has to reset it
    opened = VibeServer(ServerConfig(output_dir=str(tmp_path / "o"), input_dir=str(tmp_path / "i"),
                                     temp_dir=str(tmp_path / "t"), db_path=str(tmp_path / "db2.sqlite"),
                                     allow_any_path=True))
    assert opened.executor.restrict_paths is False and opened._with_policies(runtime.paths_restricted) is False
    for server in (closed, opened):
        server.webhooks.close(timeout_s=0)
        server.store.close()


def test_executor_runs_nodes_under_its_own_policy(tmp_path):
    from vibeboard_runner.executor import Executor
    from vibeboard_runner.registry import NodeRegistry

    from executor_nodes import Record

    class SeesPolicy(Record):
        def run(self, value):
            return {"ui": {"restricted": [runtime.paths_restricted()]}}

    registry = NodeRegistry.default(embedded=True)
    registry.register("SeesPolicy", SeesPolicy)
    prompt = {"1": {"class_type": "SeesPolicy", "inputs": {"value": 1}}}
    for restrict in (True, False):
        executor = Executor(registry, output_dir=tmp_path / "o", input_dir=tmp_path / "i", temp_dir=tmp_path / "t",
                            restrict_paths=restrict)
        result = executor.execute(prompt)
        assert result.status == "success" and result.outputs["1"]["restricted"] == [restrict]
    assert not runtime.paths_restricted()
