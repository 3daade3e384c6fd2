"""Review fixes in POST /upload/image: bounded form fields, no stray temp files."""
import os
import uuid

import pytest

from service_helpers import http, make_server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = make_server(tmp_path_factory.mktemp("upload"))
    yield srv
    srv.stop_thread()


def _body(parts):
    boundary = uuid.uuid4().hex
    chunks = []
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        chunks.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def test_huge_text_field_is_refused_not_read_into_memory(server):
    raw, headers = _body([("overwrite", None, b"1" * (2 << 20)), ("image", "a.png", b"png")])
    status, body, _ = http("POST", server.url + "/upload/image", raw=raw, headers=headers)
    assert status == 413, body
    assert body["error"]["type"] == "payload_too_large" and "overwrite" in body["error"]["message"]


def test_two_image_parts_leave_no_temp_file(server):
    raw, headers = _body([("image", "one.png", b"first"), ("image", "two.png", b"second")])
    status, body, _ = http("POST", server.url + "/upload/image", raw=raw, headers=headers)
    assert status in (200, 400), body
    leftovers = [n for n in os.listdir(server.dirs["temp"]) if n.startswith(".upload-")]
    assert leftovers == []
