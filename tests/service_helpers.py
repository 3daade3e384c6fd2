"""Helpers shared by the tests/test_service_*.py files: start a server on a free loopback port, HTTP and
websocket clients (real sockets, no test client)."""
import json
import os
import socket
import time
import urllib.error
import urllib.request
import uuid

import websocket

from vibeboard.common.replay_server import LoopbackServer, Reply

HERE = os.path.dirname(os.path.abspath(__file__))
NODES_FILE = os.path.join(HERE, "service_nodes.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_server(tmp_path, **overrides):
    from vibeboard_runner.registry import NodeRegistry
    from vibeboard_runner.server import ServerConfig, VibeServer
    from vibeboard_runner.storage import LocalStorage
    import service_nodes
    registry = NodeRegistry.default(embedded=True)
    for name, cls in service_nodes.NODE_CLASS_MAPPINGS.items():
        registry.register(name, cls)
    config = ServerConfig(host="127.0.0.1", port=0, output_dir=str(tmp_path / "output"),
                          input_dir=str(tmp_path / "input"), temp_dir=str(tmp_path / "temp"),
                          db_path=str(tmp_path / "jobs.sqlite"), webhook_backoff_s=0.05,
                          storage=LocalStorage(str(tmp_path / "store")))
    for key, value in overrides.items():
        setattr(config, key, value)
    return VibeServer(config, registry=registry).start_in_thread()


def start_server_process(tmp_path, port, extra_args=(), env_extra=None, timeout=60):
    """`python -m vibeboard_runner serve` in a subprocess (so a test can SIGKILL it), with the service test nodes and
    its state in tmp_path. Returns (process, base URL) once /vibeboard/health answers."""
    import subprocess
    import sys
    root = os.path.dirname(HERE)
    cmd = [sys.executable, "-m", "vibeboard_runner", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--output-dir", str(tmp_path / "output"), "--input-dir", str(tmp_path / "input"),
           "--temp-dir", str(tmp_path / "temp"), "--db", str(tmp_path / "jobs.sqlite"),
           "--extra-nodes", NODES_FILE, *extra_args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIBEBOARD_")}
    env.update(env_extra or {})
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(proc.stdout.read().decode())
        try:
            if http("GET", url + "/vibeboard/health", timeout=2)[0] in (200, 503):
                return proc, url
        except OSError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise TimeoutError("server did not start")


def http(method, url, body=None, headers=None, raw=None, timeout=30):
    """Returns (status, parsed JSON or bytes, headers)."""
    headers = dict(headers or {})
    data = raw
    if body is not None:
        data = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, payload, resp_headers = response.status, response.read(), response.headers
    except urllib.error.HTTPError as exc:
        status, payload, resp_headers = exc.code, exc.read(), exc.headers
    ctype = resp_headers.get("Content-Type", "")
    if ctype.startswith("application/json") and payload:
        payload = json.loads(payload)
    return status, payload, resp_headers


def multipart(fields: dict, files: dict):
    """(body, content type) for a multipart/form-data upload. files: {field: (filename, bytes)}."""
    boundary = uuid.uuid4().hex
    chunks = []
    for name, value in fields.items():
        chunks.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n".encode())
    for name, (filename, data) in files.items():
        chunks.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n"
                      "Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def server_fixture(name: str, scope: str = "module", **overrides):
    """A pytest fixture: a server on loopback for every test of the module (or each test, scope="function")."""
    import pytest

    @pytest.fixture(scope=scope)
    def server(tmp_path_factory):
        srv = make_server(tmp_path_factory.mktemp(name), **overrides)
        yield srv
        srv.stop_thread()
    return server


class WsClient:
    def __init__(self, base_url, client_id=None, token=None):
        self.client_id = client_id or uuid.uuid4().hex
        url = base_url.replace("http://", "ws://") + f"/ws?clientId={self.client_id}"
        if token:
            url += f"&token={token}"
        self.ws = websocket.create_connection(url, timeout=30)
        self.messages = []

    def until(self, predicate, timeout=30):
        """Read JSON messages until predicate(msg) is true; returns every message read so far."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.ws.settimeout(max(0.1, deadline - time.time()))
            raw = self.ws.recv()
            if isinstance(raw, bytes):
                continue
            msg = json.loads(raw)
            self.messages.append(msg)
            if predicate(msg):
                return self.messages
        raise TimeoutError(f"no matching message; got {[m['type'] for m in self.messages]}")

    def until_done(self, prompt_id, timeout=30):
        return self.until(lambda m: m["type"] == "executing" and m["data"].get("node") is None
                          and m["data"].get("prompt_id") == prompt_id, timeout)

    def close(self):
        self.ws.close()


def wait_history(base_url, prompt_id, timeout=30, headers=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        status, body, _ = http("GET", f"{base_url}/history/{prompt_id}", headers=headers)
        if status == 200 and body:
            return body[prompt_id]
        time.sleep(0.05)
    raise TimeoutError(f"{prompt_id} not in history")


def wait_until(predicate, timeout=30, every=0.05):
    """Poll until predicate() is truthy; returns its value (TimeoutError otherwise)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError("condition not reached")


def rss_mb() -> float:
    """Resident memory of this process (Linux), MB."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class HookReceiver(LoopbackServer):
    """A webhook receiver on loopback (the pack's loopback server): answers `status` (changeable) after `delay_s`,
    optionally with a Location header; records every request with its status and arrival time (monotonic)."""

    def __init__(self, delay_s=0.0, status=200, location=None):
        super().__init__()
        self.delay_s, self.status, self.location = delay_s, status, location
        self.start()

    @property
    def url(self) -> str:
        return self.base + "/hook"

    def status_for(self, request: dict) -> int:
        return self.status

    def answer(self, request: dict) -> Reply:
        request.update(time=time.monotonic(), status=self.status_for(request))  # on arrival, before any delay
        return Reply(request["status"], {"location": self.location} if self.location else {}, b"", delay_s=self.delay_s)

    def payloads(self):
        return [json.loads(r["body"]) for r in self.requests]

    def for_job(self, job_id):
        return [r for r in self.requests if json.loads(r["body"]).get("job_id") == job_id]


def start_moto(bucket: str):
    """moto's S3 server on a free loopback port with `bucket` created. Returns (server, port, boto3 client);
    call server.stop() when done."""
    import boto3
    from moto.server import ThreadedMotoServer
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_bucket(Bucket=bucket)
    return server, port, client
