"""Review fix in the remote backend: a download cut off half way is an error and leaves no file behind."""
import http.server
import os
import threading

import pytest

from runner.remote_comfyui import RemoteComfyUI, RemoteError


class _Truncating(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        self.wfile.write(b"x" * 10)  # then the connection closes

    def log_message(self, *args):
        pass


def test_cut_off_download_leaves_no_partial_file(tmp_path):
    httpd = http.server.HTTPServer(("127.0.0.1", 0), _Truncating)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        remote = RemoteComfyUI(f"http://127.0.0.1:{httpd.server_address[1]}", timeout_s=5)
        with pytest.raises(RemoteError, match="cut off"):
            remote.download({"filename": "clip.mp4", "subfolder": "", "type": "output"}, str(tmp_path))
        assert os.listdir(tmp_path) == []
    finally:
        httpd.shutdown()
        httpd.server_close()
