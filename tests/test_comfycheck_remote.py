"""Remote backend details found by running it against real ComfyUI 0.3.64 (stand-in server here)."""
import pytest

from runner.remote_comfyui import RemoteComfyUI
from service_helpers import make_server
from service_nodes import workflow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = make_server(tmp_path_factory.mktemp("cc_remote"), token="tok")
    yield srv
    srv.stop_thread()


def test_failed_node_is_not_listed_as_executed(server, tmp_path):
    """ComfyUI sends `executing` for the node that then fails; like the embedded executor, the result must
    not count it as executed."""
    result = RemoteComfyUI(server.url, token="tok").run(workflow(fail=True), str(tmp_path))
    assert result.status == "error" and result.error["node_id"] == "3"
    assert "3" not in result.executed
    assert result.executed and len(result.executed) == len(set(result.executed))
