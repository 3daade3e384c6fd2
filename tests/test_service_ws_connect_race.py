"""A client that queues first and opens its websocket second (comfy-api-simplified does) must learn that its job
ended even when the job ends while the socket is being set up: the connect status is read only after the socket
is registered for broadcasts. The race is forced: the status read at connect time is taken while the job runs and
handed back only after the job has finished and its end-of-job events were broadcast."""
import threading
import time
import uuid

from service_helpers import WsClient, http, server_fixture, wait_history, wait_until
from service_nodes import workflow

server = server_fixture("ws_connect_race", scope="function")


def test_job_ending_while_the_socket_connects_still_reaches_the_client(server):
    client_id = uuid.uuid4().hex
    status, body, _ = http("POST", f"{server.url}/prompt", {"prompt": workflow(seconds=1.0), "client_id": client_id})
    assert status == 200, body
    prompt_id = body["prompt_id"]
    wait_until(lambda: http("GET", f"{server.url}/queue")[1]["queue_running"])

    original, armed = server.service.status_data, threading.Event()

    def stale_then_late():
        if not armed.is_set():
            return original()
        armed.clear()
        snapshot = original()                     # the job is still running: queue_remaining 1
        wait_history(server.url, prompt_id)
        time.sleep(0.3)                           # its final status / executing null have been broadcast
        return snapshot

    server.service.status_data = stale_then_late
    armed.set()
    ws = WsClient(server.url, client_id)
    try:
        messages = ws.until(lambda m: (m["type"] == "executing" and m["data"].get("node") is None
                                       and m["data"].get("prompt_id") == prompt_id)
                            or (m["type"] == "status"
                                and m["data"]["status"]["exec_info"]["queue_remaining"] == 0), timeout=10)
    finally:
        ws.close()
        server.service.status_data = original
    assert messages[-1]["type"] in ("executing", "status")
