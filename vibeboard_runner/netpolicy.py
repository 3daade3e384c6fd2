"""Which hosts the runner may contact on a client's behalf (URL inputs, webhooks).

An exposed server must not become a proxy into the pod's private network (SSRF): when private destinations
are not allowed, a URL whose host resolves to a loopback, private, link-local or otherwise non-global address
is refused, on the first request and on every redirect. A server bound to loopback (development) allows them.
The check resolves the name before connecting; a DNS answer that changes in between is not caught.
"""
from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import socket
import urllib.parse
import urllib.request

# Process default (local tools: allowed). A server applies its own setting per call with `policy(...)`, in the
# thread doing the request, so starting a server changes nothing process-wide.
_state = {"allow_private": True}
_call_policy = contextvars.ContextVar("vibeboard_net_policy", default=None)


class UrlRefused(ValueError):
    pass


def set_allow_private(allow: bool) -> None:
    _state["allow_private"] = bool(allow)


@contextlib.contextmanager
def policy(allow_private: bool):
    token = _call_policy.set(bool(allow_private))
    try:
        yield
    finally:
        _call_policy.reset(token)


def private_allowed() -> bool:
    value = _call_policy.get()
    return _state["allow_private"] if value is None else value


def check_url(url: str, what: str) -> None:
    """Raise UrlRefused (message names `what`) unless `url` is http(s) to a permitted host."""
    parsed = urllib.parse.urlparse(url if isinstance(url, str) else "")
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise UrlRefused(f"{what}: only http(s) URLs with a host are accepted")
    if private_allowed():
        return
    try:
        infos = socket.getaddrinfo(parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80),
                                   proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise UrlRefused(f"{what}: cannot resolve {parsed.hostname}: {exc}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        if not address.is_global:
            raise UrlRefused(f"{what}: {parsed.hostname} resolves to a non-public address ({address}); "
                             "this server only contacts public hosts (start it with --allow-private-urls to "
                             "permit private ones)")


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        check_url(newurl, "redirect")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def open_url(request, timeout: float, what: str):
    """urllib's urlopen with the policy applied to the URL and to every redirect."""
    url = request.full_url if isinstance(request, urllib.request.Request) else request
    check_url(url, what)
    return urllib.request.build_opener(_CheckedRedirects).open(request, timeout=timeout)
