"""Review-pack: malformed widget / keyframe JSON is a NodeInputError on that input, never a raw error or NaN path."""
import numpy as np
import pytest

from vibeboard.camera import nodes as Cn
from vibeboard.common.runtime import NodeInputError


@pytest.mark.parametrize("points", ['{"points": 5}', '[1,2]', '{"points": [[0.1,0.2],[null,0.3]]}',
                                    '{"points": [{"x": 0.2}]}'])
def test_draw_path_bad_points(points):
    with pytest.raises(NodeInputError) as err:
        Cn.VBCameraPathDraw().build(points, "pan_tilt", 5, 32, 32, 60.0, "linear", 1.0)
    assert err.value.input_name == "points"


def test_draw_boxes_bad_box():
    with pytest.raises(NodeInputError) as err:
        Cn.VBBoxesDraw().build('{"boxes": [[1,2]]}', 3, 32, 32)
    assert err.value.input_name == "boxes"


@pytest.mark.parametrize("keyframes", ['[{"frame": 0, "position": [1]}]',
                                       '[{"frame": 0, "quaternion": [0, 0, 0, 0]}]',
                                       '[{"frame": 0, "position": [0, 0, NaN]}]',
                                       '[{"frame": 0, "c2w": [[1, 0], [0, 1]]}]'])
def test_keyframes_bad_pose(keyframes):
    with pytest.raises(NodeInputError) as err:
        Cn.VBCameraKeyframes().build(keyframes, 5, 32, 32, 60.0, "linear")
    assert err.value.input_name == "keyframes"


def test_keyframes_good_pose_still_works():
    path, _ = Cn.VBCameraKeyframes().build('[{"frame": 0}, {"frame": 4, "quaternion": [1, 0, 0.1, 0], '
                                           '"position": [0.1, 0, 0]}]', 5, 32, 32, 60.0, "linear")
    assert np.isfinite(path.c2w).all() and len(path) == 5
