"""Load and fault benchmark of `vibeboard serve` on loopback (CPU is fine: the test nodes do no real work).

    python bench/service_load.py                       # 1000 jobs, 50 websocket clients
    python bench/service_load.py --jobs 200 --clients 20

Rows (one markdown table):
  burst               N jobs submitted at once by C websocket clients, a quarter of them with a webhook to a
                      dead receiver, a quarter to a slow one (0.5 s), a quarter to a healthy one
  submit latency      POST /vibeboard/jobs round trip (p50 / p95 / p99)
  submit→done         POST → the client's websocket hears `executing {node: null}` (p50 / p95)
  event-loop lag      how late a 20 ms sleep inside the server's loop wakes up during the burst (the server, the
                      GPU worker and all client threads share this process and its GIL on purpose)
  GET /features       a client probe every 50 ms during the burst
  healthy webhooks    all delivered once; seconds after the last job finished
  lost / duplicated   jobs missing from history / files written twice
  RSS growth          resident memory of this process (server + clients) after the burst
  hanging S3          same jobs with an S3 endpoint that stops answering (TCP proxy in front of moto):
                      time for the runs to finish vs the burst (uploads time out on their own workers)
  /history at 10 000  max_items=100; a cursor page 9 000 deep; no max_items (capped at 1000); uncapped
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (os.path.join(ROOT, "tests"), os.path.join(ROOT, "custom_nodes"), ROOT):
    sys.path.insert(0, path)

from fault_proxy import TcpProxy  # noqa: E402
from service_helpers import HookReceiver, WsClient, free_port, http, make_server, rss_mb, start_moto  # noqa: E402
from service_nodes import workflow  # noqa: E402


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def burst(srv, jobs: int, clients_n: int, hooks: tuple) -> dict:
    clients = [WsClient(srv.url) for _ in range(clients_n)]
    submit_s, sent_at, done_at = [], {}, {}
    probe, stop_probe = [], threading.Event()

    def prober():
        while not stop_probe.is_set():
            start = time.perf_counter()
            http("GET", srv.url + "/features")
            probe.append(time.perf_counter() - start)
            time.sleep(0.05)

    def submit(index):
        client = clients[index % clients_n]
        body = {"workflow": workflow(index % 1000, kind="json"), "client_id": client.client_id}
        hook = hooks[index % len(hooks)]
        if hook:
            body["webhook"] = hook
        start = time.perf_counter()
        status, reply, _ = http("POST", srv.url + "/vibeboard/jobs", body)
        submit_s.append(time.perf_counter() - start)
        assert status == 201, reply
        sent_at[reply["job_id"]] = start
        return client.client_id, reply["job_id"]

    def listen(client, mine):
        waiting = set(mine)

        def seen(msg):
            client.messages.clear()  # keep the clients' own memory out of the RSS figure
            if msg["type"] == "executing" and msg["data"].get("node") is None:
                done_at[msg["data"]["prompt_id"]] = time.perf_counter()
                waiting.discard(msg["data"]["prompt_id"])
            return not waiting
        client.until(seen, timeout=600)

    lag = []

    async def loop_lag():  # inside the server's event loop: how late does a 20 ms sleep wake up?
        import asyncio
        while not stop_probe.is_set():
            start = time.perf_counter()
            await asyncio.sleep(0.02)
            lag.append(time.perf_counter() - start - 0.02)

    import asyncio
    asyncio.run_coroutine_threadsafe(loop_lag(), srv._loop)
    rss0 = rss_mb()
    threading.Thread(target=prober, daemon=True).start()
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients_n) as pool:
        submitted = list(pool.map(submit, range(jobs)))
    with ThreadPoolExecutor(max_workers=clients_n) as pool:
        list(pool.map(lambda c: listen(c, [j for cid, j in submitted if cid == c.client_id]), clients))
    elapsed = time.perf_counter() - start
    stop_probe.set()
    for client in clients:
        client.close()
    history = http("GET", srv.url + f"/history?max_items={jobs}")[1]
    ids = [j for _c, j in submitted]
    files = [f for _r, _d, names in os.walk(srv.dirs["output"]) for f in names]
    return {"elapsed": elapsed, "submit": submit_s, "e2e": [done_at[j] - sent_at[j] for j in ids],
            "probe": probe, "lag": lag, "lost": len(set(ids) - set(history)), "dup_files": len(files) - len(set(files)),
            "rss": rss_mb() - rss0, "ids": ids, "finished": time.perf_counter()}


def history_timings(tmp: Path) -> dict:
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from test_service_history_paging import _fill
    out = {}
    for limit in (1000, 10 ** 9):
        srv = make_server(tmp / f"hist{limit}", history_page_limit=limit)
        try:
            _fill(srv.store, 10_000)

            def timed_get(url):
                start = time.perf_counter()
                status, body, headers = http("GET", srv.url + url)
                return time.perf_counter() - start, body, headers
            if limit == 1000:
                out["max_items=100"] = timed_get("/history?max_items=100")[0]
                cursor_url = "/history?max_items=100"
                for _ in range(90):  # walk 9 000 entries back
                    _s, _b, headers = timed_get(cursor_url)
                    cursor_url = f"/history?max_items=100&cursor={headers['X-VibeBoard-Next-Cursor']}"
                out["cursor page 9 000 deep"] = timed_get(cursor_url)[0]
                out["no max_items (capped 1000)"] = timed_get("/history")[0]
            else:
                out["no max_items, uncapped (10 000)"] = timed_get("/history")[0]
        finally:
            srv.stop_thread()
    return out


def hanging_s3(tmp: Path, jobs: int) -> dict:
    from vibeboard_runner.storage import S3Storage
    moto, port, _client = start_moto("bench")
    proxy = TcpProxy(port)
    proxy.mode = "hang"
    storage = S3Storage("bench", endpoint_url=proxy.url, region_name="auto", access_key_id="testing",
                        secret_access_key="testing", read_timeout_s=2, connect_timeout_s=2, max_attempts=1,
                        upload_attempts=1)
    srv = make_server(tmp / "s3", storage=storage)
    try:
        start = time.perf_counter()
        ids = [http("POST", srv.url + "/vibeboard/jobs", {"workflow": workflow(i, kind="json")})[1]["job_id"]
               for i in range(jobs)]
        while srv.store.count("queued", "running"):
            time.sleep(0.01)
        runs_done = time.perf_counter() - start
        uploading = sum(1 for j in ids if srv.store.get(j)["upload_state"] == "pending")
        return {"jobs": jobs, "runs_done_s": runs_done, "still_uploading": uploading}
    finally:
        srv.stop_thread()
        proxy.close()
        moto.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=50)
    args = parser.parse_args()
    import logging
    logging.disable(logging.WARNING)  # the dead receiver and the hanging bucket log on purpose
    tmp = Path(tempfile.mkdtemp(prefix="vb-load-"))
    slow, good = HookReceiver(delay_s=0.5), HookReceiver()
    dead = f"http://127.0.0.1:{free_port()}/hook"
    srv = make_server(tmp / "burst", webhook_attempts=3)
    try:
        result = burst(srv, args.jobs, args.clients, (dead, slow.url, good.url, None))
        good_ids = set(result["ids"][2::4])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and {p["job_id"] for p in good.payloads()} != good_ids:
            time.sleep(0.02)
        good_last = max(r["time"] for r in good.requests) if good.requests else float("nan")
        good_lag = good_last - (time.monotonic() - (time.perf_counter() - result["finished"]))
        good_dups = len(good.requests) - len({p["job_id"] for p in good.payloads()})
    finally:
        srv.stop_thread()
    s3 = hanging_s3(tmp, min(args.jobs, 100))
    hist = history_timings(tmp)
    ms = lambda s: f"{s * 1000:.1f} ms"  # noqa: E731
    rows = [
        ("burst", f"{args.jobs} jobs / {args.clients} ws clients in {result['elapsed']:.2f} s "
                  f"({args.jobs / result['elapsed']:.0f} jobs/s)"),
        ("submit latency p50 / p95 / p99", " / ".join(ms(pct(result["submit"], q)) for q in (0.5, 0.95, 0.99))),
        ("submit→done p50 / p95", " / ".join(f"{pct(result['e2e'], q):.2f} s" for q in (0.5, 0.95))),
        ("event-loop lag p50 / p99 / max", " / ".join(ms(pct(result["lag"], q)) for q in (0.5, 0.99, 1.0))),
        ("GET /features during the burst p50 / max", f"{ms(pct(result['probe'], 0.5))} / {ms(max(result['probe']))}"),
        ("healthy webhooks", f"{len(good.requests)}/{len(good_ids)} delivered, {good_dups} duplicated, last "
                             f"{max(good_lag, 0):.2f} s after the last job"),
        ("lost / duplicated", f"{result['lost']} / {result['dup_files']}"),
        ("RSS growth", f"{result['rss']:.0f} MB"),
        ("hanging S3", f"{s3['jobs']} runs done in {s3['runs_done_s']:.2f} s, {s3['still_uploading']} still "
                       "waiting on the bucket (GPU worker never blocked)"),
    ] + [(f"/history at 10 000: {k}", ms(v)) for k, v in hist.items()]
    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
