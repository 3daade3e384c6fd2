"""ComfyUI's /history routes on the job store: GET /history (paged, with a cursor past the page limit),
GET /history/{prompt_id}, POST /history {"clear"} / {"delete": [ids]}. Shapes follow ComfyUI's server.py."""
from __future__ import annotations

import base64
import json

from aiohttp import web

from .security import ApiError

SQL_INT_MAX = 2 ** 63 - 1
NEXT_CURSOR_HEADER = "X-VibeBoard-Next-Cursor"


def history_routes(server) -> list:
    """(method, path, handler) rows for VibeServer's route table (served at /x and /api/x)."""
    history = History(server)
    return [("GET", "/history", history.get_history), ("POST", "/history", history.post_history),
            ("GET", "/history/{prompt_id}", history.get_history_one)]


async def clear_or_delete(server, request, delete) -> web.Response:
    """ComfyUI's {"clear": true} / {"delete": [ids]} body (POST /queue and POST /history), applied off the loop
    with `delete(ids)`; `delete(None)` clears everything."""
    body = await server._json(request)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_request", "expected {\"clear\": true} or {\"delete\": [ids]}")
    ids = body.get("delete")
    if "delete" in body and not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)):
        raise ApiError(400, "invalid_request", "'delete' must be a list of prompt ids")
    if body.get("clear"):
        await server._off(delete, None)
    if "delete" in body:
        await server._off(delete, ids)
    return web.Response(status=200)


class History:
    def __init__(self, server):
        self.server = server

    async def get_history(self, request):
        try:
            # min(): 10**400 is a valid integer but not an SQLite one; past any history size it means all/none
            max_items = min(int(request.query["max_items"]), SQL_INT_MAX) if "max_items" in request.query else None
            offset = min(int(request.query["offset"]), SQL_INT_MAX) if "offset" in request.query else None
        except ValueError:
            raise ApiError(400, "invalid_request", "max_items and offset must be integers")
        if offset is not None and offset < 0:
            offset = None  # ComfyUI's own default is -1: "the last max_items"
        if max_items is not None and max_items < 0:
            raise ApiError(400, "invalid_request", "max_items must not be negative")
        return await self._page(request, max_items, offset)

    async def _page(self, request, max_items, offset) -> web.Response:
        """One page of history, built off the loop. `cursor` (from X-VibeBoard-Next-Cursor) continues towards
        older entries; without max_items a page holds at most history_page_limit entries."""
        server = self.server
        before = decode_cursor(request.query["cursor"]) if "cursor" in request.query else None
        if max_items is None and offset is None:
            max_items = server.config.history_page_limit
        elif max_items is not None:
            max_items = min(max_items, server.config.history_page_limit)
        rows = await server._off(server.store.history, max_items, None if before else offset, before)
        headers = {}
        if rows and (before is not None or offset is None) and await server._off(server.store.has_history_before,
                                                                                  rows[0]["cursor"]):
            headers[NEXT_CURSOR_HEADER] = encode_cursor(rows[0]["cursor"])
        return await server._json_response({r["id"]: r["history"] for r in rows}, headers=headers)

    async def get_history_one(self, request):
        server = self.server
        job = await server._off(server.store.get, request.match_info["prompt_id"])
        if job is None or job["history"] is None:
            return web.json_response({})
        return await server._json_response({job["id"]: job["history"]})

    async def post_history(self, request):
        return await clear_or_delete(self.server, request, self.server.store.delete_history)


def encode_cursor(cursor: tuple) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(cursor)).encode()).decode().rstrip("=")


def decode_cursor(text: str) -> tuple:
    try:
        finished_at, number, job_id = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        return float(finished_at), float(number), str(job_id)
    except Exception:
        raise ApiError(400, "invalid_request", f"cursor is not one this server gave out ({NEXT_CURSOR_HEADER})")
