"""Review fix: /object_info omits a node whose INPUT_TYPES raises (as ComfyUI does) instead of failing whole."""
import executor_nodes as N
from vibeboard_runner.registry import NodeRegistry


class Broken:
    RETURN_TYPES = ()
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        raise OSError("models folder is not readable")


def test_object_info_skips_a_broken_node():
    registry = NodeRegistry(dict(N.ALL, Broken=Broken))
    info = registry.object_info()
    assert "Broken" not in info and "Constant" in info
