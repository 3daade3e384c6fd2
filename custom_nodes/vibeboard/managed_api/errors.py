"""Provider failures turned into errors that name the node and the input a user can act on.

Every error is a `NodeInputError` (so hosts show "Node: input 'x': ...") with a `kind` that callers such as
apiMedic classify on: auth, quota, rate, server, timeout, cancelled, queue, input, download, missing_extra.
`retryable` says whether trying again later can help (rate limits, server errors, timeouts) — never for a
bad key, an empty account or a rejected input. Secrets are scrubbed from every message.
"""
from __future__ import annotations

from typing import Iterable, Optional

from ..common.runtime import NodeInputError

RETRYABLE_KINDS = {"rate", "server", "timeout", "download"}


class ManagedApiError(NodeInputError):
    def __init__(self, node: str, input_name: str, message: str, *, kind: str, status: Optional[int] = None,
                 provider: str = "", request_id: Optional[str] = None):
        self.kind = kind
        self.status = status
        self.provider = provider
        self.request_id = request_id
        self.retryable = kind in RETRYABLE_KINDS
        super().__init__(node, input_name, message)


class MissingExtraError(ManagedApiError):
    def __init__(self, node: str, package: str):
        super().__init__(node, "model", f"needs the Python package '{package}', which is not installed: "
                         "pip install 'vibeboard[api]'", kind="missing_extra", provider="")


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Remove secret values from a message (a provider or proxy could echo the key back)."""
    text = str(text)
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def provider_message(body, fallback: str) -> str:
    """The human part of a provider's error body: fal's {"detail": ...}, OpenAI's {"error": {"message"}}."""
    if isinstance(body, dict):
        detail = body.get("detail", body.get("error", body.get("message")))
        if isinstance(detail, dict):
            detail = detail.get("message") or detail.get("msg") or detail
        if isinstance(detail, list):  # FastAPI-style validation errors: [{"loc": [...], "msg": "..."}]
            parts = []
            for item in detail:
                if isinstance(item, dict):
                    loc = ".".join(str(p) for p in item.get("loc", []) if p != "body")
                    parts.append(f"{loc}: {item.get('msg', item)}" if loc else str(item.get("msg", item)))
                else:
                    parts.append(str(item))
            detail = "; ".join(parts)
        if detail:
            return str(detail)
    return (fallback or "").strip()[:500] or "no message"


# provider argument → the node input a user changes to fix it (fal's 422 bodies name the argument in `loc`)
ARGUMENT_INPUTS = {"image_size": "width", "duration": "duration_s", "image_url": "image", "video_url": "input_video",
                   "prompt": "prompt", "seed": "seed", "num_images": "num_images", "aspect_ratio": "aspect_ratio",
                   "resolution": "resolution", "negative_prompt": "negative_prompt", "strength": "strength",
                   "generate_audio": "generate_audio"}


def rejected_input(body, default: str) -> str:
    """The node input behind the first argument a validation error names, else `default`."""
    detail = body.get("detail") if isinstance(body, dict) else None
    for item in detail if isinstance(detail, list) else []:
        for part in (item.get("loc") or []) if isinstance(item, dict) else []:
            if str(part) in ARGUMENT_INPUTS:
                return ARGUMENT_INPUTS[str(part)]
            if str(part) not in ("body", "query"):
                return "extra_arguments"
    return default


def from_status(node: str, provider: str, status: int, message: str, *, key_env: str,
                input_for_rejection: str = "prompt", request_id: Optional[str] = None,
                secrets: Iterable[str] = ()) -> ManagedApiError:
    """One HTTP status from a provider → the error a user can act on."""
    message = scrub(message, secrets)
    where = f"{provider} answered {status}"
    if status in (401, 403):
        return ManagedApiError(node, "api_key_env", f"{where}: {message}. The key in ${key_env} is missing "
                               "rights or wrong; set a valid key in that environment variable",
                               kind="auth", status=status, provider=provider, request_id=request_id)
    if status == 402:
        return ManagedApiError(node, "model", f"{where} (payment required): {message}. Top up the "
                               f"{provider} account or pick a cheaper model", kind="quota", status=status,
                               provider=provider, request_id=request_id)
    if status == 429:
        return ManagedApiError(node, "model", f"{where} (rate limited, retried with backoff): {message}. "
                               "Try again later or lower the parallel requests", kind="rate", status=status,
                               provider=provider, request_id=request_id)
    if status in (400, 404, 413, 415, 422):
        return ManagedApiError(node, input_for_rejection, f"{where}, rejecting the request: {message}",
                               kind="input", status=status, provider=provider, request_id=request_id)
    if status >= 500:
        return ManagedApiError(node, "model", f"{where} (server error): {message}. The request was not "
                               "re-sent automatically (it could be billed twice); run again to retry",
                               kind="server", status=status, provider=provider, request_id=request_id)
    return ManagedApiError(node, "model", f"{where}: {message}", kind="input", status=status,
                           provider=provider, request_id=request_id)
