"""The pack's one loopback replay server (vibeboard.common.replay_server): ordered interactions with {base}
filled in, uses counted, a miss answered 599 naming the request, a truncated body; and the LLM cassette server,
the managed-API tests' server and the self-host shim all being that one server."""
import http.client
import json
import urllib.error
import urllib.request

import pytest

from vibeboard.common.replay_server import LoopbackServer, ReplayServer


def _get(url, data=None):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_interactions_answer_in_order_with_base_filled_and_a_miss_is_599_naming_the_request():
    items = [{"method": "POST", "path": "re:/jobs/.*", "status": 429, "json": {"retry": "{base}/again"}},
             {"method": "POST", "path": "re:/jobs/.*", "json": {"ok": True}, "times": -1}]
    with ReplayServer(items) as server:
        first = _get(server.base + "/jobs/a?x=1", b"{}")
        assert first[0] == 429 and json.loads(first[1]) == {"retry": server.base + "/again"}
        for _ in range(2):
            assert _get(server.base + "/jobs/b", b"{}") == (200, b'{"ok": true}')
        status, body = _get(server.base + "/other")
        assert status == 599 and "GET /other" in json.loads(body)["detail"]
    assert [(r["method"], r["path"], r["query"]) for r in server.requests][:2] == [("POST", "/jobs/a", "x=1"),
                                                                                   ("POST", "/jobs/b", "")]


def test_a_truncated_reply_drops_the_connection_mid_body():
    with ReplayServer([{"path": "/clip", "text": "0123456789", "truncate_to": 4}]) as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.request("GET", "/clip")
        response = connection.getresponse()
        assert response.getheader("content-length") == "10"
        with pytest.raises(http.client.IncompleteRead):
            response.read()


def test_every_replay_and_loopback_shim_is_the_one_server():
    from managed_api_replay import ReplayServer as ManagedReplay
    from vibeboard.llm.cassette import CassetteServer
    from vibeboard.llm.selfhost import LocalChatServer
    assert ManagedReplay is ReplayServer
    assert all(issubclass(cls, LoopbackServer) for cls in (ReplayServer, CassetteServer, LocalChatServer))


def test_a_fake_that_raises_answers_500_naming_the_error():
    with LoopbackServer(answer=lambda request: {}["missing"]) as server:
        status, body = _get(server.base + "/x")
    assert status == 500 and "KeyError" in json.loads(body)["detail"]
