"""Who may talk to `vibeboard serve`: DNS rebinding in no-token mode, tokens (blank, non-ASCII), /system_stats."""
import socket
import sys

import pytest

from service_helpers import http, make_server


def _raw_get(port: int, path: str, header_lines: bytes) -> tuple:
    """A GET with exactly these header bytes (urllib would re-encode them); returns (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\n" + header_lines + b"Connection: close\r\n\r\n")
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.fixture
def open_server(tmp_path):
    srv = make_server(tmp_path, allowed_hosts=["studio.local"])
    yield srv
    srv.stop_thread()


def test_no_token_mode_serves_loopback_host_names_only(open_server):
    port = open_server.port
    for host in (b"127.0.0.1", b"localhost", b"[::1]", b"studio.local"):  # the last one is configured
        status, _ = _raw_get(port, "/queue", b"Host: " + host + b":%d\r\n" % port)
        assert status == 200, host
    # a rebinding page: its own name resolves to 127.0.0.1, so Host (and a matching Origin) name it
    status, body = _raw_get(port, "/queue", b"Host: evil.example:%d\r\n" % port)
    assert status == 403 and b"forbidden_origin" in body
    status, _ = _raw_get(port, "/prompt", b"Host: evil.example:%d\r\nOrigin: http://evil.example:%d\r\n" % (port, port))
    assert status == 403
    # a loopback Host with a foreign or opaque Origin (a cross-site page, a sandboxed frame)
    for origin in (b"http://evil.example", b"null"):
        status, _ = _raw_get(port, "/queue", b"Host: 127.0.0.1:%d\r\nOrigin: " % port + origin + b"\r\n")
        assert status == 403, origin
    status, _ = _raw_get(port, "/queue", b"Host: 127.0.0.1:%d\r\nOrigin: http://localhost:%d\r\n" % (port, port))
    assert status == 200
    # the websocket handshake is checked too
    status, _ = _raw_get(port, "/ws?clientId=x", b"Host: evil.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")
    assert status == 403


def test_browser_request_rules():
    from vibeboard_runner.security import browser_request_allowed
    assert browser_request_allowed("127.0.0.1:8188", None) is None
    assert browser_request_allowed("LOCALHOST.:8188", "http://127.0.0.1:8188") is None
    assert browser_request_allowed("evil.example:8188", "http://evil.example:8188")
    assert browser_request_allowed("127.0.0.2", None) is None  # all of 127/8
    assert browser_request_allowed("", None)


def test_system_stats_does_not_echo_the_token_or_webhook_secret(tmp_path, monkeypatch):
    token, secret = "tok-" + "s3cr3t" * 3, "hook-" + "k3y" * 4
    monkeypatch.setattr(sys, "argv", ["vibeboard", "serve", "--token", token, f"--webhook-secret={secret}",
                                      "--config", f"/x/{token}.json"])
    srv = make_server(tmp_path, token=token, webhook_secret=secret)
    try:
        status, body, _ = http("GET", f"{srv.url}/system_stats", headers={"Authorization": f"Bearer {token}"})
        assert status == 200
        text = repr(body)
        assert token not in text and secret not in text
        assert body["system"]["argv"][:3] == ["vibeboard", "serve", "--token"]
        # non-ASCII bytes in Authorization: a 401, not a 500
        status, raw = _raw_get(srv.port, "/queue", b"Host: 127.0.0.1\r\nAuthorization: Bearer \xff\xfe\xc3(\r\n")
        assert status == 401 and b"unauthorized" in raw
    finally:
        srv.stop_thread()


def test_blank_token_is_refused(tmp_path):
    from vibeboard_runner.cli import main
    from vibeboard_runner.security import check_bind_allowed
    for blank in ("", "   "):
        with pytest.raises(SystemExit, match="blank token"):
            check_bind_allowed("127.0.0.1", blank)
    code = main(["serve", "--token", " ", "--output-dir", str(tmp_path / "o"), "--db", str(tmp_path / "db.sqlite")])
    assert code == 2
