import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# This checkout's code wins over any installed copy (helpers work in separate git worktrees).
for path in (os.path.join(ROOT, "custom_nodes"), ROOT):
    if path not in sys.path:
        sys.path.insert(0, path)


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _local_path_policy():
    """Servers started by a test restrict node file paths process-wide; later tests run as a local user."""
    yield
    from vibeboard.common import runtime
    runtime.set_path_policy(False)
