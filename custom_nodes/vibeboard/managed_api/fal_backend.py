"""fal.ai through its official Python client (`fal-client`), queue API only: submit → status (queue position,
logs) → result, with our own deadline, interrupt → remote cancel, and provider errors mapped for users.

Why not `fal_client.subscribe`: it cannot be interrupted from the host or given our progress hooks, and a
client-side timeout there leaves the decision to cancel to the caller anyway. We drive the same handle
(`SyncClient.submit` → `SyncRequestHandle.status/get/cancel`) step by step instead.

Base URLs: fal-client reads its hosts once (FAL_RUN_HOST / FAL_QUEUE_RUN_HOST, https only) and keeps the
queue, REST and CDN addresses in module attributes (`QUEUE_URL_FORMAT`, `REST_URL`, `CDN_URL` in
`fal_client.client`). VIBEBOARD_FAL_QUEUE_URL / _REST_URL / _CDN_URL set those (a proxy, or the loopback
replay server of the tests); unset, the SDK's own defaults are restored.
"""
from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional

from ..common import runtime
from .errors import ManagedApiError, MissingExtraError, from_status, provider_message, rejected_input, scrub

log = logging.getLogger("vibeboard.managed_api")
PROVIDER = "fal.ai"
_OVERRIDES = (("VIBEBOARD_FAL_QUEUE_URL", "QUEUE_URL_FORMAT"), ("VIBEBOARD_FAL_REST_URL", "REST_URL"),
              ("VIBEBOARD_FAL_CDN_URL", "CDN_URL"))
_sdk_defaults: dict = {}
TRANSIENT_POLL_RETRIES = 4   # status/result reads are idempotent: retry them; never re-submit
_PERCENT = re.compile(r"(\d{1,3}(?:\.\d+)?)\s*%")
_STEPS = re.compile(r"\b(\d+)\s*/\s*(\d+)\b")


def sdk(node: str):
    """The fal_client.client module with our endpoint overrides applied (or a clear missing-extra error)."""
    try:
        import fal_client.client as fc
    except ImportError:
        raise MissingExtraError(node, "fal-client") from None
    if not _sdk_defaults:
        _sdk_defaults.update({attr: getattr(fc, attr, None) for _, attr in _OVERRIDES})
    for env, attr in _OVERRIDES:
        value = os.environ.get(env, "").strip()
        if _sdk_defaults[attr] is None:  # an SDK version without this address: leave it alone
            continue
        if not value:
            setattr(fc, attr, _sdk_defaults[attr])
        else:
            setattr(fc, attr, value.rstrip("/") + "/" if attr == "QUEUE_URL_FORMAT" else value.rstrip("/"))
    return fc


def endpoints_overridden() -> bool:
    return any(os.environ.get(env, "").strip() for env, _ in _OVERRIDES)


@dataclass
class Progress:
    """fal gives queue position and free-text logs, no percentage: map phases onto one 0..100 bar
    (upload 0-10, queue 10-20, running 20-90 from '45%' / '12/28' in the logs, download 90-100)."""
    bar: object = None
    value: int = 0
    logs: List[str] = field(default_factory=list)

    def set(self, value: float) -> None:
        value = int(max(self.value, min(100, value)))  # never goes backwards
        self.value = value
        if self.bar is not None:
            self.bar.update_absolute(value, 100)

    def running_logs(self, entries) -> None:
        for entry in entries or []:
            message = str(entry.get("message", "")) if isinstance(entry, dict) else str(entry)
            self.logs.append(message)
            log.info("fal: %s", message)
            fraction = None
            found = _PERCENT.findall(message)
            if found:
                fraction = float(found[-1]) / 100.0
            else:
                steps = _STEPS.findall(message)
                if steps and int(steps[-1][1]) > 0:
                    fraction = int(steps[-1][0]) / int(steps[-1][1])
            if fraction is not None:
                self.set(20 + 70 * max(0.0, min(1.0, fraction)))


class FalJob:
    """One queued request on one endpoint, owned by one node call."""

    def __init__(self, node: str, key: str, key_env: str, model_id: str, *, timeout_s: float,
                 poll_s: Optional[float] = None, progress: Optional[Progress] = None,
                 input_for_rejection: str = "prompt"):
        self.node, self.key, self.key_env, self.model_id = node, key, key_env, model_id
        self.timeout_s = float(timeout_s)
        self.poll_s = float(poll_s if poll_s is not None else os.environ.get("VIBEBOARD_FAL_POLL_S", 1.0))
        self.progress = progress or Progress()
        self.input_for_rejection = input_for_rejection
        self.fc = sdk(node)
        self.client = self.fc.SyncClient(key=key, default_timeout=min(120.0, max(self.timeout_s, 1.0)))
        self.handle = None
        self.request_id: Optional[str] = None
        self.cancel_sent = False

    # -- errors -----------------------------------------------------------------------------------
    def _error(self, exc: Exception, input_name: str = "") -> ManagedApiError:
        import httpx
        fc = self.fc
        if isinstance(exc, ManagedApiError):
            return exc
        if isinstance(exc, fc.FalClientHTTPError):
            try:
                body = exc.response.json()
            except Exception:
                body = None
            message = provider_message(body, exc.message if isinstance(exc.message, str) else str(exc))
            return from_status(self.node, PROVIDER, exc.status_code, message, key_env=self.key_env,
                               input_for_rejection=input_name or rejected_input(body, self.input_for_rejection),
                               request_id=self.request_id, secrets=[self.key])
        if isinstance(exc, httpx.TimeoutException):
            return ManagedApiError(self.node, "timeout_s", f"{PROVIDER} did not answer in time "
                                   f"({type(exc).__name__}); try again or raise timeout_s", kind="timeout",
                                   provider=PROVIDER, request_id=self.request_id)
        if isinstance(exc, httpx.TransportError):
            return ManagedApiError(self.node, "model", f"cannot reach {PROVIDER}: "
                                   f"{scrub(exc, [self.key]) or type(exc).__name__}", kind="server",
                                   provider=PROVIDER, request_id=self.request_id)
        return ManagedApiError(self.node, "model", f"{PROVIDER} call failed: {type(exc).__name__}: "
                               f"{scrub(exc, [self.key])}", kind="server", provider=PROVIDER,
                               request_id=self.request_id)

    # -- uploads ----------------------------------------------------------------------------------
    def upload(self, data: bytes, content_type: str, file_name: str, input_name: str) -> str:
        try:
            return self.client.upload(data, content_type, file_name=file_name)
        except Exception as exc:
            err = self._error(exc, input_name)
            raise ManagedApiError(self.node, input_name, f"upload of {file_name} failed: "
                                  f"{str(err).split(': ', 2)[-1]}", kind=err.kind, status=err.status,
                                  provider=PROVIDER) from None

    # -- the queue --------------------------------------------------------------------------------
    def cancel(self) -> bool:
        """Ask fal to drop the request (works while queued; a running one may still finish)."""
        if self.handle is None or self.cancel_sent:
            return self.cancel_sent
        try:
            self.handle.cancel()
            self.cancel_sent = True
        except Exception as exc:  # the job is ending anyway: report, don't mask the real error
            log.warning("fal: cancel of %s failed: %s", self.request_id, scrub(exc, [self.key]))
        return self.cancel_sent

    def run(self, arguments: dict, on_request_id: Optional[Callable[[str], None]] = None) -> dict:
        """Submit, wait (polling status with logs), return the result JSON. Raises ManagedApiError."""
        started = time.monotonic()
        try:
            self.handle = self.client.submit(self.model_id, arguments)
        except Exception as exc:
            raise self._error(exc) from None
        self.request_id = self.handle.request_id
        if on_request_id is not None:
            on_request_id(self.request_id)
        self.progress.set(10)
        try:
            self._wait(started)
            return self._result()
        except runtime.InterruptProcessing:
            self.cancel()
            raise

    def _read(self, call):
        """An idempotent read (status, result): transient failures are retried with backoff. Never a submit."""
        failures = 0
        while True:
            try:
                return call()
            except ValueError:  # a status the SDK does not know: not transient
                raise
            except Exception as exc:
                err = self._error(exc)
                failures += 1
                if not err.retryable or failures > TRANSIENT_POLL_RETRIES:
                    raise err from None
                time.sleep(min(8.0, self.poll_s * 2 ** failures))

    def _wait(self, started: float) -> None:
        fc = self.fc
        while True:
            runtime.check_interrupt()
            if time.monotonic() - started > self.timeout_s:
                cancelled = self.cancel()
                raise ManagedApiError(
                    self.node, "timeout_s", f"no result from {PROVIDER} within {self.timeout_s:g} s (request "
                    f"{self.request_id}); the remote request was {'cancelled' if cancelled else 'asked to stop'}"
                    "; nothing was written", kind="timeout", provider=PROVIDER, request_id=self.request_id)
            try:
                status = self._read(lambda: self.handle.status(with_logs=True))
            except ValueError as exc:  # e.g. FAILED / CANCELED
                raise ManagedApiError(self.node, "model", f"{PROVIDER} request {self.request_id} ended "
                                      f"without a result: {exc}", kind="queue", provider=PROVIDER,
                                      request_id=self.request_id) from None
            if isinstance(status, fc.Queued):
                self.progress.set(12 + min(8, 8 / (1 + status.position)))
            elif isinstance(status, fc.InProgress):
                self.progress.set(20)
                self.progress.running_logs(status.logs)
            elif isinstance(status, fc.Completed):
                self.progress.running_logs(status.logs)
                if status.error:
                    raise ManagedApiError(self.node, self.input_for_rejection, f"{PROVIDER} request "
                                          f"{self.request_id} failed: {status.error}"
                                          + (f" ({status.error_type})" if status.error_type else ""),
                                          kind="queue", provider=PROVIDER, request_id=self.request_id)
                self.progress.set(90)
                return
            time.sleep(self.poll_s)

    def _result(self) -> dict:
        return self._read(lambda: self.handle.get(interval=self.poll_s))

    def close(self) -> None:
        """Close the SDK's HTTP connection pool (SyncClient keeps one per client, created on first use)."""
        pool = self.client.__dict__.get("_client")
        if pool is not None:
            pool.close()

    def fetch_existing(self, request_id: str) -> dict:
        """The stored result of an earlier, already paid request (re-download after a failed download)."""
        self.request_id = request_id
        self.handle = self.client.get_handle(self.model_id, request_id)
        return self._result()
