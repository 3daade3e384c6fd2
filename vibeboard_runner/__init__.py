"""VibeBoard runner: an embedded ComfyUI-compatible executor, CLI, server and storage."""
import os
import sys

# The node pack lives in custom_nodes/vibeboard; make it importable as `vibeboard` from a plain checkout.
_PACK_PARENT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "custom_nodes")
if os.path.isdir(os.path.join(_PACK_PARENT, "vibeboard")) and _PACK_PARENT not in sys.path:
    sys.path.insert(0, _PACK_PARENT)

__version__ = "0.1.0"
