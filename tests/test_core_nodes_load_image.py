"""Review fix in the embedded LoadImage: a name on another drive (Windows 'D:x.png') is refused by name."""
import pytest

from vibeboard_runner import core_nodes
from vibeboard.common import runtime


def test_other_drive_name_is_a_node_input_error(tmp_path, monkeypatch):
    monkeypatch.setitem(runtime._dirs, "input", str(tmp_path))  # restored after the test

    def commonpath(paths):  # what ntpath does for paths on two drives
        raise ValueError("Paths don't have the same drive")

    monkeypatch.setattr(core_nodes.os.path, "commonpath", commonpath)
    with pytest.raises(runtime.NodeInputError, match="image"):
        core_nodes._safe_input_path("D:plate.png")
    assert "plate.png" in core_nodes.LoadImage.VALIDATE_INPUTS("D:plate.png")
