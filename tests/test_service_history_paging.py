"""/history at 10 000 entries: ComfyUI's max_items/offset, a keyset cursor for the next (older) page, a cap on
one response, and SQLite/JSON work kept off the event loop (a locked database never stalls other routes)."""
import json
import threading
import time

import pytest

from service_helpers import http, make_server

N = 10_000


def _fill(store, count):
    entry = {"prompt": [0, "x", {"1": {"class_type": "SvcConst", "inputs": {"value": 1}}}, {}, ["9"]],
             "outputs": {"9": {"images": [{"filename": "out_00001_.png", "subfolder": "svc", "type": "output"}]}},
             "status": {"status_str": "success", "completed": True, "messages": []}, "meta": {}}
    rows = []
    for i in range(count):
        job_id = f"job-{i:05}"
        entry["prompt"][1] = job_id
        rows.append((job_id, i + 1, json.dumps(entry), 1000.0 + i))
    with store._lock:
        store._db.execute("BEGIN")
        store._db.executemany(
            "INSERT INTO jobs (id, number, status, prompt, extra_data, outputs_to_execute, created_at, history, "
            "finished_at) VALUES (?, ?, 'success', '{}', '{}', '[]', 0, ?, ?)", rows)
        store._db.execute("COMMIT")
        store._counter = count + 1


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = make_server(tmp_path_factory.mktemp("paging"), history_page_limit=500)
    _fill(srv.store, N)
    yield srv
    srv.stop_thread()


def _timed(url):
    start = time.perf_counter()
    status, body, headers = http("GET", url)
    return status, body, headers, time.perf_counter() - start


def test_last_page_and_cursor_walk_back_through_10000_entries(server):
    status, body, headers, seconds = _timed(server.url + "/history?max_items=100")
    assert status == 200 and list(body) == [f"job-{i:05}" for i in range(N - 100, N)]  # newest 100, oldest first
    assert seconds < 1.0, seconds
    seen = list(body)
    for _ in range(3):
        cursor = headers["X-VibeBoard-Next-Cursor"]
        status, body, headers, seconds = _timed(f"{server.url}/history?max_items=100&cursor={cursor}")
        assert status == 200 and len(body) == 100 and seconds < 1.0
        assert list(body)[-1] < seen[0]  # strictly older, no overlap
        seen = list(body) + seen
    assert seen == [f"job-{i:05}" for i in range(N - 400, N)]
    # the oldest page has no cursor
    status, body, headers, _ = _timed(server.url + "/history?max_items=3&offset=0")
    assert list(body) == ["job-00000", "job-00001", "job-00002"] and "X-VibeBoard-Next-Cursor" not in headers
    assert http("GET", server.url + "/history?cursor=garbage")[0] == 400


def test_one_call_without_max_items_is_capped(server):
    status, body, headers, seconds = _timed(server.url + "/history")
    assert status == 200 and len(body) == 500 and list(body)[-1] == f"job-{N - 1:05}"
    assert "X-VibeBoard-Next-Cursor" in headers and seconds < 2.0, seconds
    status, body, _, _ = _timed(server.url + "/history?max_items=5000&offset=20")
    assert len(body) == 500 and list(body)[0] == "job-00020"


def test_a_locked_database_does_not_stall_the_event_loop(server):
    held = threading.Event()

    def hold_lock():
        with server.store._lock:
            held.set()
            time.sleep(1.5)

    thread = threading.Thread(target=hold_lock)
    thread.start()
    held.wait(5)
    slow = threading.Thread(target=lambda: http("GET", server.url + "/history?max_items=10"))
    slow.start()  # waits for the database on the I/O pool
    start = time.perf_counter()
    assert http("GET", server.url + "/features")[0] == 200
    assert time.perf_counter() - start < 0.5  # the loop kept serving
    thread.join()
    slow.join()
