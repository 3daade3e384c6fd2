"""API keys come from an environment variable whose *name* is a node input — never the key itself, so no
graph, history entry or saved workflow ever holds a secret."""
from __future__ import annotations

import os
import re

from .errors import ManagedApiError

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def require_key(node: str, env_name: str, provider: str, input_name: str = "api_key_env") -> str:
    name = (env_name or "").strip()
    if not _ENV_NAME.match(name):
        raise ManagedApiError(node, input_name, f"'{env_name}' is not an environment variable name; give the "
                              "NAME of the variable that holds the key (e.g. FAL_KEY), never the key",
                              kind="auth", provider=provider)
    value = os.environ.get(name, "").strip()
    if not value:
        raise ManagedApiError(node, input_name, f"no {provider} API key: the environment variable ${name} is "
                              f"not set. Export it (export {name}=...) where the worker runs; nothing was sent",
                              kind="auth", provider=provider)
    return value
