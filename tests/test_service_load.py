"""200 concurrent jobs from 20 websocket clients, some with webhooks to a dead and a slow receiver: every job
runs exactly once, each client hears exactly its own jobs end, the queue drains, memory stays bounded.
(The heavier run with timings is bench/service_load.py.)"""
import os
import time
from concurrent.futures import ThreadPoolExecutor

from service_helpers import HookReceiver, WsClient, free_port, http, make_server, rss_mb
from service_nodes import workflow

CLIENTS, PER_CLIENT = 20, 10


def test_200_jobs_20_websocket_clients_dead_and_slow_webhooks(tmp_path):
    slow, good = HookReceiver(delay_s=0.3), HookReceiver()
    dead = f"http://127.0.0.1:{free_port()}/hook"
    srv = make_server(tmp_path, webhook_attempts=2)
    clients = [WsClient(srv.url) for _ in range(CLIENTS)]
    rss_before = rss_mb()
    try:
        def submit(index):
            client = clients[index % CLIENTS]
            body = {"workflow": workflow(index % 1000, kind="json"), "client_id": client.client_id}
            hook = (dead, slow.url, good.url, None)[index % 4]
            if hook:
                body["webhook"] = hook
            status, reply, _ = http("POST", srv.url + "/vibeboard/jobs", body)
            assert status == 201, reply
            return client.client_id, reply["job_id"]

        start = time.monotonic()
        with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            submitted = list(pool.map(submit, range(CLIENTS * PER_CLIENT)))
        mine = {c.client_id: {job for cid, job in submitted if cid == c.client_id} for c in clients}

        def listen(client):
            waiting, ended = set(mine[client.client_id]), []

            def done(msg):
                client.messages.clear()  # only the server's memory counts below
                if msg["type"] == "executing" and msg["data"].get("node") is None:
                    ended.append(msg["data"]["prompt_id"])
                    waiting.discard(msg["data"]["prompt_id"])
                return not waiting
            client.until(done, timeout=120)
            return ended

        with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            heard = dict(zip([c.client_id for c in clients], pool.map(listen, clients)))
        elapsed = time.monotonic() - start
        for client_id, ended in heard.items():  # each client hears its own jobs end, once each, nobody else's
            assert sorted(ended) == sorted(mine[client_id])
        history = http("GET", srv.url + "/history?max_items=1000")[1]
        ids = [job for _cid, job in submitted]
        assert sorted(history) == sorted(ids) and len(set(ids)) == CLIENTS * PER_CLIENT
        assert all(entry["status"]["status_str"] == "success" for entry in history.values())
        names = [f for _root, _dirs, files in os.walk(tmp_path / "output") for f in files]
        assert len(names) == len(set(names)) == CLIENTS * PER_CLIENT  # one file per job, none shared
        good_jobs = {job for i, (_cid, job) in enumerate(submitted) if i % 4 == 2}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and {p["job_id"] for p in good.payloads()} != good_jobs:
            time.sleep(0.05)
        assert {p["job_id"] for p in good.payloads()} == good_jobs and len(good.requests) == len(good_jobs)
        # the slow receiver is still working through its lane; the healthy one finished long before it
        assert http("GET", srv.url + "/prompt")[1]["exec_info"]["queue_remaining"] == 0
        assert srv.service.submitted_at_monotonic == {} and srv.service.publisher.pending() == 0
        assert rss_mb() - rss_before < 150, (rss_before, rss_mb())
        print(f"200 jobs / 20 ws clients: {elapsed:.1f} s, RSS +{rss_mb() - rss_before:.0f} MB")
    finally:
        for client in clients:
            client.close()
        srv.stop_thread()
        slow.close()
        good.close()
