"""Review fix: GET /history paging matches ComfyUI (an explicit offset=0 means 'from the oldest')."""
from runner.jobstore import JobStore


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
