"""Input hardening for the server: token auth, path checks, JSON size/depth limits, graph sanity checks.

Every failure is an ApiError carrying an HTTP status and a ComfyUI-shaped JSON body, so clients get a clear
4xx and the server carries on.
"""
from __future__ import annotations

import hmac
import ipaddress
import json
import os
from typing import Optional

from .graph import is_link


class ApiError(Exception):
    def __init__(self, status: int, type_: str, message: str, details: str = "", extra: Optional[dict] = None,
                 node_errors: Optional[dict] = None):
        super().__init__(message)
        self.status = status
        self.body = {"error": {"type": type_, "message": message, "details": details, "extra_info": extra or {}},
                     "node_errors": node_errors or {}}


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(value: str) -> str:
    """The host part of a Host header or URL netloc ('[::1]:8188' → '::1', 'Example.com.:80' → 'example.com')."""
    value = (value or "").strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value[1:]
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


def browser_request_allowed(host_header: str, origin: Optional[str], allowed_hosts=()) -> Optional[str]:
    """For a server without a token (bound to loopback): None when the request may go on, else why not.

    A web page can reach a loopback server through DNS rebinding (evil.example resolves to 127.0.0.1 after the
    page loaded), and then its requests carry `Host: evil.example` and a matching Origin, so comparing Origin
    with Host proves nothing. Only loopback names and the names configured in `allowed_hosts` are served, and a
    browser's Origin, when sent, must name one of them too.
    """
    allowed = {host_name(h) for h in allowed_hosts if h}

    def ok(name: str) -> bool:
        return bool(name) and (is_loopback(name) or name in allowed)

    host = host_name(host_header)
    if not ok(host):
        return f"Host '{host_header}' is not a loopback name (add it with --allowed-host to serve it without a token)"
    if origin is not None:
        import urllib.parse
        parsed = urllib.parse.urlparse(origin)
        if origin.strip().lower() == "null" or not ok(host_name(parsed.netloc)):
            return f"cross-origin request from {origin} refused"
    return None


def check_bind_allowed(host: str, token: Optional[str]) -> None:
    """Refuse to serve on a reachable address without a token: anyone could run code-heavy jobs on the GPU.
    A blank token is refused everywhere: it reads as 'a token was meant' but would protect nothing."""
    if token is not None and (not isinstance(token, str) or not token.strip()):
        raise SystemExit("refusing a blank token: pass a real --token / VIBEBOARD_TOKEN (or none at all on loopback)")
    if not is_loopback(host) and not token:
        raise SystemExit(f"refusing to listen on {host} without a token: pass --token or set VIBEBOARD_TOKEN "
                         "(a token is required whenever the server is reachable from other machines)")


def token_ok(expected: Optional[str], headers, query, allow_query: bool) -> bool:
    if not expected:
        return True
    given = None
    auth = headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    elif allow_query:
        given = query.get("token")
    if given is None:
        return False
    # header bytes that are not UTF-8 arrive as surrogates; compare bytes, never raise on them
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass"))


SECRET_OPTIONS = ("--token", "--webhook-secret")
_secrets: set = set()


def register_secrets(*values) -> None:
    """Remember secret values (token, webhook secret) so that nothing we echo contains them."""
    _secrets.update(v for v in values if isinstance(v, str) and v.strip())


def redacted_argv(argv, secrets=()) -> list:
    """The command line with secret option values and any known secret text replaced by '***' (for
    /system_stats, which ComfyUI clients read for `argv`)."""
    secrets = sorted({s for s in secrets if isinstance(s, str) and s} | _secrets, key=len, reverse=True)
    out, hide_next = [], False
    for arg in argv:
        arg = str(arg)
        if hide_next:
            out.append("***")
            hide_next = False
            continue
        name = arg.split("=", 1)[0]
        if name in SECRET_OPTIONS:
            out.append(f"{name}=***" if "=" in arg else arg)
            hide_next = "=" not in arg
            continue
        for secret in secrets:
            arg = arg.replace(secret, "***")
        out.append(arg)
    return out


# --- paths ---------------------------------------------------------------------------------------

MAX_NAME_BYTES = 200  # file systems stop at 255; an upload may gain " (12)" on a clash


def safe_relpath(name: str, what: str, allow_subdirs: bool = True) -> str:
    """Validate a client-given relative path; refuses absolute paths, '..', drive letters and NUL bytes."""
    if name is None:
        return ""
    if not isinstance(name, str):
        raise ApiError(400, "invalid_path", f"{what} must be a string")
    if "\x00" in name:
        raise ApiError(400, "invalid_path", f"{what} contains a NUL byte")
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":"):
        raise ApiError(403, "invalid_path", f"{what} must be relative, got an absolute path")
    parts = [p for p in norm.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise ApiError(403, "invalid_path", f"{what} must not contain '..'")
    if any(len(p.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES for p in parts):
        raise ApiError(400, "invalid_path", f"{what} has a name longer than {MAX_NAME_BYTES} bytes")
    if not allow_subdirs and len(parts) > 1:
        raise ApiError(400, "invalid_path", f"{what} must be a plain file name")
    return "/".join(parts)


def resolve_inside(base: str, *relparts: str) -> str:
    """Join (parts already checked by safe_relpath) and resolve symlinks; the result must stay inside base."""
    from vibeboard.common.paths import is_inside
    base_real = os.path.realpath(base)
    path = os.path.realpath(os.path.join(base_real, *[p for p in relparts if p]))
    if not is_inside(path, base_real):
        raise ApiError(403, "invalid_path", "path leaves the allowed folder")
    return path


# --- JSON ----------------------------------------------------------------------------------------

def json_depth_exceeds(value, max_depth: int) -> bool:
    """Iterative depth check (no recursion, so a hostile document cannot blow the stack here)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth > max_depth:
                return True
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            if depth > max_depth:
                return True
            stack.extend((v, depth + 1) for v in item)
    return False


def non_finite_path(value) -> Optional[str]:
    """Where a NaN or ±Infinity sits in a parsed JSON value (Python's json accepts them; JSON does not), or None.
    Iterative, like json_depth_exceeds."""
    import math
    stack = [(value, "")]
    while stack:
        item, where = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return where or "(top level)"
        if isinstance(item, dict):
            stack.extend((v, f"{where}.{k}" if where else str(k)) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(item))
    return None


def require_strict_json(value, what: str) -> None:
    """400 when `value` holds NaN/Infinity: what we store and serve (history, job status) stays strict JSON."""
    where = non_finite_path(value)
    if where is not None:
        raise ApiError(400, "invalid_json", f"{what} contains NaN or Infinity at {where}; JSON has no such numbers",
                       extra={"path": where})


def parse_json(raw: bytes, max_bytes: int, max_depth: int, what: str = "request body"):
    if len(raw) > max_bytes:
        raise ApiError(413, "payload_too_large", f"{what} is {len(raw)} bytes; the limit is {max_bytes}")
    if not raw.strip():
        raise ApiError(400, "invalid_json", f"{what} is empty; expected a JSON object")
    try:
        value = json.loads(raw)
    except RecursionError:
        raise ApiError(400, "json_too_deep", f"{what} is nested too deeply (limit {max_depth} levels)")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"{what} is not valid JSON: {exc}")
    if json_depth_exceeds(value, max_depth):
        raise ApiError(400, "json_too_deep", f"{what} is nested too deeply (limit {max_depth} levels)")
    return value


# --- graph ---------------------------------------------------------------------------------------

def check_graph(prompt, max_nodes: int = 5000) -> None:
    """Shape checks ComfyUI leaves to execution time: node dicts, links to missing nodes, cycles."""
    if not isinstance(prompt, dict) or not prompt:
        raise ApiError(400, "invalid_prompt", "prompt must be a non-empty JSON object {node_id: node}")
    if len(prompt) > max_nodes:
        raise ApiError(413, "prompt_too_large", f"prompt has {len(prompt)} nodes; the limit is {max_nodes}")
    edges = {}
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
            raise ApiError(400, "invalid_prompt", f"node {node_id!r} must be an object with a 'class_type' string",
                           details=f"Node ID '#{node_id}'")
        inputs = node.get("inputs", {})
        if not isinstance(inputs, dict):
            raise ApiError(400, "invalid_prompt", f"node {node_id!r}: 'inputs' must be an object",
                           details=f"Node ID '#{node_id}'")
        deps = []
        for name, value in inputs.items():
            if is_link(value, raw=True):  # before normalisation: integer node ids too
                source = str(value[0])
                if source not in prompt:
                    raise ApiError(400, "invalid_prompt",
                                   f"node {node_id!r} input {name!r} links to node {source!r}, which is not in the prompt",
                                   details=f"Node ID '#{node_id}'", extra={"input_name": name, "linked_node": value})
                deps.append(source)
        edges[str(node_id)] = deps
    # iterative DFS colouring: 0 new, 1 on stack, 2 done
    colour = {n: 0 for n in edges}
    for start in edges:
        if colour[start]:
            continue
        stack = [(start, iter(edges[start]))]
        colour[start] = 1
        path = [start]
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                colour[node] = 2
                stack.pop()
                path.pop()
            elif colour[nxt] == 1:
                cycle = path[path.index(nxt):] + [nxt]
                raise ApiError(400, "dependency_cycle", "the prompt has a dependency cycle: " + " → ".join(cycle),
                               details=f"Node ID '#{nxt}'", extra={"cycle": cycle})
            elif colour[nxt] == 0:
                colour[nxt] = 1
                stack.append((nxt, iter(edges[nxt])))
                path.append(nxt)
