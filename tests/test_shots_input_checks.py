"""Review-pack: blocking JSON and montage frame numbers are checked, with errors naming the node input."""
import pytest
import torch

from vibeboard.common.runtime import NodeInputError
from vibeboard.shots import nodes_blocking as B


@pytest.mark.parametrize("blocking", ['{"boxes": [[1, 2]]}', '{"boxes": [{"x0": 0.1, "y0": 0.1, "x1": 0.5, "y1": NaN}]}',
                                      '{"boxes": [{"box": [0.1, 0.1, Infinity, 0.5]}]}'])
def test_boxes_load_refuses_malformed_boxes(blocking):
    with pytest.raises(NodeInputError) as err:
        B.VBBoxesLoad().load(blocking, "")
    assert err.value.input_name == "blocking"


def test_montage_negative_frame_past_the_start_is_an_error():
    with pytest.raises(NodeInputError) as err:
        B.VBMontageControl().build(torch.rand(2, 8, 8, 3), "-100, 3", 16, 16, 9)
    assert err.value.input_name == "frames"


def test_montage_negative_frame_counts_from_the_end():
    _, mask = B.VBMontageControl().build(torch.rand(1, 8, 8, 3), "-1", 16, 16, 9, snap_to_latent=False)
    assert mask[8].sum() == 0 and mask[:8].min() == 1
