"""ComfyUI entry point: `git clone` this repo into ComfyUI/custom_nodes/ and ComfyUI imports this file.

The node pack itself lives in custom_nodes/vibeboard. We import it under its canonical name `vibeboard`
so that the same classes are used whether ComfyUI, the embedded runner or a test imports them.
"""
import os
import sys

_PACK_PARENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "custom_nodes")
if _PACK_PARENT not in sys.path:
    sys.path.insert(0, _PACK_PARENT)

import vibeboard  # noqa: E402

NODE_CLASS_MAPPINGS = vibeboard.NODE_CLASS_MAPPINGS
NODE_DISPLAY_NAME_MAPPINGS = vibeboard.NODE_DISPLAY_NAME_MAPPINGS
WEB_DIRECTORY = "./web/js"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
