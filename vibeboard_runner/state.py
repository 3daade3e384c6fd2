"""Where the runner keeps its runtime state: the job queue database and the local output store.

One folder, never loose files in the current directory: `VIBEBOARD_STATE_DIR` when set, else `state/` next to
the output folder (`./state` for the default `./output`; covered by .gitignore). A database left by an older
version next to the output folder is still used, so an upgrade loses no queued job.
"""
from __future__ import annotations

import logging
import os
from typing import Mapping, Optional

log = logging.getLogger("vibeboard.state")

DB_NAME = "vibeboard-jobs.sqlite"
STORE_NAME = "vibeboard-store"


def state_dir(output_dir: str = "output", env: Optional[Mapping[str, str]] = None) -> str:
    env = os.environ if env is None else env
    explicit = env.get("VIBEBOARD_STATE_DIR")
    if explicit:
        return os.path.abspath(os.path.expanduser(explicit))
    return os.path.join(os.path.dirname(os.path.abspath(output_dir)), "state")


def default_db_path(output_dir: str = "output", env: Optional[Mapping[str, str]] = None) -> str:
    path = os.path.join(state_dir(output_dir, env), DB_NAME)
    legacy = os.path.join(os.path.dirname(os.path.abspath(output_dir)), DB_NAME)
    if not os.path.exists(path) and os.path.exists(legacy):
        log.warning("using the job database of an older version at %s (new default: %s)", legacy, path)
        return legacy
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


def default_store_dir(output_dir: str = "output", env: Optional[Mapping[str, str]] = None) -> str:
    return os.path.join(state_dir(output_dir, env), STORE_NAME)
