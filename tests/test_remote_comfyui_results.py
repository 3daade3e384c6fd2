"""Remote backend details found by running it against real ComfyUI 0.3.64 (stand-in server here)."""
import pytest

from vibeboard_runner.remote_comfyui import RemoteComfyUI
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


def test_entry_outside_the_output_folder_is_skipped_not_fatal(server, tmp_path):
    """Real ComfyUI 0.3.64: a memory saver given an absolute folder reports {"subfolder": "/abs/dir", "type":
    "output"}, which /view refuses (403). The whole remote run used to fail ("leaves the output folder", exit 4,
    no --json result) although ComfyUI succeeded; like the embedded executor, skip that entry and keep the rest."""
    remote = RemoteComfyUI(server.url, token="tok")
    result = remote.run(workflow(), str(tmp_path / "dl"))
    assert result.status == "success" and result.files and not result.skipped
    outputs = dict(result.history["outputs"])
    outside = {"filename": "manifest.json", "subfolder": str(tmp_path / "elsewhere"), "type": "output"}
    outputs["99"] = {"files": [outside, {"filename": "../../x.json", "subfolder": "", "type": "output"}]}
    skipped = []
    files = remote.collect(outputs, str(tmp_path / "dl2"), skipped=skipped)
    assert [f["filename"] for f in files] == [f["filename"] for f in result.files]
    assert [s["filename"] for s in skipped] == ["manifest.json", "../../x.json"]
    assert not (tmp_path / "elsewhere").exists()
