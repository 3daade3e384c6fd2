"""Review-pack: Rack Focus takes the first depth map of a batch whether depth comes as MASK or IMAGE."""
import torch

from vibeboard.optics import nodes as O


def test_rack_focus_uses_first_map_of_an_image_depth_batch():
    image, depth, _, _, _ = O.VBSampleRGBDScene().make(32, 24, 0)
    lens = dict(aperture_k=20.0, max_coc=16.0, aperture_shape="disc", blades=6, rotation=0.0, linear_light=True)
    args = dict(depth_convention=O.METRIC_LABEL, frames=2, near_focus=0.0, far_focus=0.0, reverse=False, **lens)
    as_mask = O.VBRackFocus().rack(image, torch.cat([depth, depth * 2]), **args)
    as_image = O.VBRackFocus().rack(image, torch.cat([depth, depth * 2]).unsqueeze(-1).repeat(1, 1, 1, 3), **args)
    torch.testing.assert_close(as_image[0], as_mask[0])
    assert as_image[1:] == as_mask[1:]


def test_genfocus_bokeh_accepts_a_2d_defocus_mask():
    from vibeboard.optics_learned.nodes import VBGenFocusBokeh

    class Stub:
        def run(self, image, conditions, adapter, prompt, steps, guidance, seed):
            return image

    image = torch.rand(1, 32, 32, 3)
    out = VBGenFocusBokeh().run(Stub(), image, torch.rand(32, 32), 1, 0, 1024)[0]
    assert out.shape == (1, 32, 32, 3)
