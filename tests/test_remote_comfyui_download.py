"""Review fix in the remote backend: a download cut off half way is an error and leaves no file behind."""
import os

import pytest

from vibeboard.common.replay_server import ReplayServer
from vibeboard_runner.remote_comfyui import RemoteComfyUI, RemoteError


def test_cut_off_download_leaves_no_partial_file(tmp_path):
    # 10 of 100000 bytes, then the connection closes
    with ReplayServer([{"path": "/view", "text": "x" * 100000, "truncate_to": 10}]) as server:
        remote = RemoteComfyUI(server.base, timeout_s=5)
        with pytest.raises(RemoteError, match="cut off"):
            remote.download({"filename": "clip.mp4", "subfolder": "", "type": "output"}, str(tmp_path))
        assert os.listdir(tmp_path) == [] and len(server.calls("GET", "/view")) == 1


class _FakeWs:
    def __init__(self, messages, fail=False):
        self.messages, self.fail, self.closed = list(messages), fail, False

    def settimeout(self, value):
        pass

    def recv(self):
        import websocket
        if self.fail:
            raise websocket.WebSocketConnectionClosedException("dropped")
        return self.messages.pop(0)

    def close(self):
        self.closed = True


def test_socket_opened_by_a_reconnect_is_closed(tmp_path):
    import json
    done = json.dumps({"type": "executing", "data": {"node": None, "prompt_id": "p1"}})
    entry = {"outputs": {}, "status": {"status_str": "success", "completed": True, "messages": []}}
    sockets = []

    class Remote(RemoteComfyUI):
        def connect(self):
            ws = _FakeWs([], fail=True) if not sockets else _FakeWs([done])
            sockets.append(ws)
            return ws

        def submit(self, prompt, extra_data=None, prompt_id=None):
            return "p1"

        def history(self, prompt_id):
            return entry if sockets[-1].messages == [] and len(sockets) > 1 else None

    remote = Remote("http://127.0.0.1:9", backoff_s=0.01)
    result = remote.run({"1": {"class_type": "X", "inputs": {}}}, str(tmp_path))
    assert result.status == "success" and result.reconnects == 1
    assert len(sockets) == 2 and all(ws.closed for ws in sockets)


def test_remote_name_on_another_drive_is_refused(tmp_path, monkeypatch):
    import vibeboard_runner.remote_comfyui as remote_module

    def commonpath(paths):  # what ntpath does for a remote filename like "D:evil.png"
        raise ValueError("Paths don't have the same drive")

    monkeypatch.setattr(remote_module.os.path, "commonpath", commonpath)
    with pytest.raises(RemoteError, match="leaves the output folder"):
        RemoteComfyUI("http://127.0.0.1:9").download({"filename": "D:evil.png"}, str(tmp_path))
