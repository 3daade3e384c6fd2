"""Who may call the server (the single token check, or loopback Host names only), and how every error reaches the
client: ComfyUI's JSON error shape, never a traceback page. Both are aiohttp middlewares `VibeServer` installs;
the browser cookie that stands in for the token lives with the editor (frontend.cookie_auth_middleware).
See docs/service.md for the security model."""
from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from .security import ApiError, browser_request_allowed, token_ok

log = logging.getLogger("vibeboard.server")

# Served without a token: the load-balancer probe, and the Dailies review page itself (it holds no data).
OPEN_PATHS = ("/vibeboard/health", "/vibeboard/dailies/review")
# Where a browser cannot send a header (websocket, <img src>): ?token= is accepted there.
QUERY_TOKEN_PATHS = ("/ws", "/view")


def _error_body(kind: str, message: str, details: str = "") -> dict:
    return {"error": {"type": kind, "message": message, "details": details, "extra_info": {}}, "node_errors": {}}


@web.middleware
async def errors_middleware(request, handler):
    try:
        return await handler(request)
    except ApiError as exc:
        return web.json_response(exc.body, status=exc.status)
    except HttpProcessingError as exc:  # e.g. a multipart header with a NUL byte in the file name
        return web.json_response(_error_body("invalid_request", f"malformed request: {exc.message}"), status=400)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return web.json_response(_error_body("http_error", exc.reason, exc.text or ""), status=exc.status)
    except Exception as exc:  # a bug must not take the server down; the client still gets JSON
        log.exception("unhandled error on %s %s", request.method, request.path)
        return web.json_response(_error_body("server_error", f"{type(exc).__name__}: {exc}"), status=500)


def auth_middleware(server):
    """The token when one is set; otherwise (loopback only) loopback Host names and `config.allowed_hosts`."""
    @web.middleware
    async def middleware(request, handler):
        path = request.path[4:] if request.path.startswith("/api/") else request.path
        if path in OPEN_PATHS:
            return await handler(request)
        config = server.config
        token = config.token
        if token:
            query_ok = path in QUERY_TOKEN_PATHS
            if not token_ok(token, request.headers, request.query, allow_query=query_ok):
                raise ApiError(401, "unauthorized", "missing or wrong token: send 'Authorization: Bearer <token>'"
                               + (" or ?token=<token>" if query_ok else ""))
        else:
            # No token (loopback only): serve loopback Host names only, so neither a cross-site page nor a
            # DNS-rebinding one can drive the server (see security.browser_request_allowed).
            refused = browser_request_allowed(request.host, request.headers.get("Origin"), config.allowed_hosts)
            if refused:
                raise ApiError(403, "forbidden_origin", refused)
        return await handler(request)
    return middleware
