"""Review fix: GET /history paging matches ComfyUI (an explicit offset=0 means 'from the oldest')."""
from vibeboard_runner.jobstore import JobStore


def _store(tmp_path, n):
    store = JobStore(str(tmp_path / "jobs.sqlite"))
    for i in range(n):
        store.add(f"p{i}", {}, {}, [], store.next_number())
        store.claim_next()
        store.finish(f"p{i}", "success", {"outputs": {}})
    return store


def test_max_items_alone_gives_the_newest(tmp_path):
    store = _store(tmp_path, 5)
    assert [j["id"] for j in store.history(2)] == ["p3", "p4"]
    store.close()


def test_explicit_offset_zero_pages_from_the_oldest(tmp_path):
    store = _store(tmp_path, 5)
    assert [j["id"] for j in store.history(2, 0)] == ["p0", "p1"]
    assert [j["id"] for j in store.history(2, 2)] == ["p2", "p3"]
    store.close()


def test_history_route_offsets_like_comfyui(tmp_path):
    from service_helpers import http, make_server, wait_history
    from service_nodes import workflow
    server = make_server(tmp_path)
    try:
        ids = []
        for value in range(3):
            status, body, _ = http("POST", server.url + "/prompt", {"prompt": workflow(value)})
            assert status == 200, body
            ids.append(body["prompt_id"])
            wait_history(server.url, ids[-1])
        assert list(http("GET", server.url + "/history?max_items=1&offset=0")[1]) == ids[:1]
        assert list(http("GET", server.url + "/history?max_items=1")[1]) == ids[-1:]
        assert list(http("GET", server.url + "/history?max_items=1&offset=-1")[1]) == ids[-1:]
    finally:
        server.stop_thread()


def test_non_finite_number_is_refused_and_cannot_break_a_restart(tmp_path):
    import json
    from service_helpers import http, make_server
    from service_nodes import workflow
    server = make_server(tmp_path)
    try:
        for literal in ("Infinity", "-Infinity", "NaN"):
            raw = ('{"prompt": %s, "number": %s}' % (json.dumps(workflow(1)), literal)).encode()
            status, body, _ = http("POST", server.url + "/prompt", raw=raw,
                                   headers={"Content-Type": "application/json"})
            assert status == 400, (literal, body)
            assert "number" in body["error"]["message"]
    finally:
        server.stop_thread()
    JobStore(str(tmp_path / "jobs.sqlite")).close()  # reopening the queue still works


def test_store_opens_with_an_infinite_number_already_stored(tmp_path):
    store = JobStore(str(tmp_path / "jobs.sqlite"))
    store.add("inf", {}, {}, [], float("inf"))
    store.close()
    store = JobStore(str(tmp_path / "jobs.sqlite"))
    assert store.next_number() == 1
    store.close()
