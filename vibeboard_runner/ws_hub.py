"""WebSocket clients of the server and ordered delivery of events coming from the worker thread."""
from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Optional

from aiohttp import WSMsgType, web

log = logging.getLogger("vibeboard.ws")


class WsHub:
    def __init__(self):
        self.sockets: dict = {}  # client id → WebSocketResponse (a reused clientId replaces the old socket)
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self._queue: Optional[asyncio.Queue] = None
        self._task: Optional[asyncio.Task] = None

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._pump())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for ws in list(self.sockets.values()):
            await ws.close()
        self.sockets.clear()

    def emit(self, event: str, data: dict, sid: Optional[str]) -> None:
        """Thread-safe; events keep their order because one task sends them all."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._queue.put_nowait, (event, data, sid))
        except RuntimeError:  # loop shutting down
            pass

    async def _pump(self) -> None:
        while True:
            event, data, sid = await self._queue.get()
            try:
                text = json.dumps({"type": event, "data": data}, default=str)
            except (TypeError, ValueError) as exc:  # one odd payload must not end delivery for good
                log.error("cannot send %s event: %s", event, exc)
                continue
            targets = list(self.sockets.items()) if sid is None else [(sid, self.sockets.get(sid))]
            for client_id, ws in targets:
                if ws is None or ws.closed:
                    continue
                try:
                    await ws.send_str(text)
                except Exception as exc:  # a dead client must not stop delivery to the others
                    log.debug("ws send to %s failed: %s", client_id, exc)

    async def handle(self, request: web.Request, status_data, on_connect_extra=None,
                     feature_flags: Optional[dict] = None) -> web.WebSocketResponse:
        """`status_data`: the queue status dict, or an async callable giving it. A callable is read only after the
        socket is registered: a job that ends while the client connects then either reaches the new socket through
        the broadcast or is already counted in the status it gets (a client that queues first and connects second —
        comfy-api-simplified does — would otherwise wait forever on a stale `queue_remaining: 1`)."""
        ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=1 << 20)
        await ws.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        old = self.sockets.get(sid)
        self.sockets[sid] = ws
        if old is not None and not old.closed:
            await old.close()
        try:
            if callable(status_data):
                status_data = await status_data()
            await ws.send_str(json.dumps({"type": "status", "data": {**status_data, "sid": sid}}))
            if on_connect_extra is not None:
                for event, data in on_connect_extra(sid):
                    await ws.send_str(json.dumps({"type": event, "data": data}))
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    try:
                        payload = json.loads(msg.data)
                    except ValueError:
                        continue
                    if isinstance(payload, dict) and payload.get("type") == "feature_flags":
                        await ws.send_str(json.dumps({"type": "feature_flags", "data": feature_flags or {}}))
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            if self.sockets.get(sid) is ws:
                del self.sockets[sid]
        return ws
