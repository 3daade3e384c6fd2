"""Depth-aware, occlusion-aware bokeh renderer (layered scatter, FFT convolution), CPU and CUDA alike.

Per focus setting the scene is split into layers by *signed* circle of confusion (behind the focal plane,
in focus, in front of it). Layer radii come from a fixed ladder (0, 1, 2, 3, 4, then ×1.25 steps), so
every kernel spectrum is computed once and shared by all focus settings of a run. Layers are rendered
back to front:

  1. the layer's premultiplied colour and its alpha (a 0/1 mask) are blurred with the layer's aperture
     kernel — FFT convolution with zero padding, cropped to the layer's bounding box grown by the blur's
     reach; large radii are blurred at reduced resolution. Focus settings whose crops overlap are batched
     together (one FFT call per group), so a batch of focus settings costs about what its pixels cost;
  2. before a blurred layer is composited, the holes of what lies behind it (pixels owned by this layer or
     nearer ones) are filled from the farther layers' own colour (push-pull normalised convolution), so a
     semi-transparent, blurred foreground edge shows an estimate of the hidden background instead of black;
  3. the layer goes "over" the accumulation: acc = P + (1 − A) · acc.

Consequences the tests check: an in-focus layer is copied untouched; a sharp foreground never leaks into a
blurred background (the background layer never contains it); a blurred foreground spreads over a sharp
background (its alpha grows past its edge). Blur happens in linear light by default (sRGB ≈ gamma 2.2).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F

from . import aperture as ap

GAMMA = 2.2
SPECTRA_CACHE_BYTES = 512 * 2**20  # kernel spectra kept between renders (per process, all devices)


@dataclass(frozen=True)
class LensSettings:
    aperture_k: float = 20.0        # CoC diameter (px) = K · |1/z − 1/d_f|
    max_coc: float = 64.0           # CoC diameter is clamped here (px); also the defocus map's normaliser
    blades: int = 0                 # 0 = disc, >= 3 = polygon
    rotation_deg: float = 0.0
    linear_light: bool = True       # blur in linear light (brighter, truer bokeh)
    downsample_radius: float = 8.0  # blur big kernels at reduced resolution while radius stays >= this; 0 = never


def radius_ladder(max_radius: float) -> list:
    """Layer radii (px): 0 (in focus), 1, 2, 3, 4, then ×1.25 steps until max_radius is covered."""
    radii = [0.0]
    r = 1.0
    while r < max_radius:
        radii.append(r)
        r = r + 1.0 if r < 4 else r * 1.25
    if max_radius > radii[-1] + 1e-6:
        radii.append(float(max_radius))
    return radii


def _layer_edges(radii: Sequence[float], device) -> torch.Tensor:
    """Bucket boundaries between consecutive ladder radii (midpoints)."""
    r = torch.tensor(radii, dtype=torch.float32, device=device)
    return (r[1:] + r[:-1]) / 2


def _push_pull(acc: torch.Tensor) -> torch.Tensor:
    """Normalised colour everywhere: data where alpha > 0, else the nearest data at a coarser scale."""
    levels = [acc]
    cur = acc
    while min(cur.shape[-2:]) > 1:
        cur = F.avg_pool2d(cur, 2, ceil_mode=True)
        levels.append(cur)
    alpha = cur[:, 3:4]
    filled = torch.where(alpha > 1e-6, cur / alpha.clamp(min=1e-6), torch.zeros_like(cur))
    for level in reversed(levels[:-1]):
        up = F.interpolate(filled, size=level.shape[-2:], mode="bilinear", align_corners=False)
        filled = level + (1.0 - level[:, 3:4]).clamp(min=0.0) * up
    return filled


def fill_holes(acc: torch.Tensor, factor: int = 4) -> torch.Tensor:
    """Where alpha < 1, add (1 − alpha) × the colour of the nearest data (push-pull at 1/factor resolution).

    acc: [N, 4, H, W] premultiplied RGB + alpha. Pixels with alpha 1 are left exactly as they are; the fill
    is only ever seen through semi-transparent blurred edges, so a coarse estimate is enough.
    """
    h, w = acc.shape[-2:]
    if factor > 1 and min(h, w) >= 8 * factor:
        small = F.interpolate(acc, size=(math.ceil(h / factor), math.ceil(w / factor)), mode="area")
    else:
        small = acc
    filled = _push_pull(small)
    alpha = filled[:, 3:4]
    colour = torch.where(alpha > 1e-6, filled / alpha.clamp(min=1e-6), torch.zeros_like(filled))
    if colour.shape[-2:] != (h, w):
        colour = F.interpolate(colour, size=(h, w), mode="bilinear", align_corners=False)
    return acc + (1.0 - acc[:, 3:4]).clamp(min=0.0) * colour


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


class _Blur:
    """FFT blur of [N, 4, H, W] layers with cached kernel spectra per (resolution scale, radius, side)."""

    _spectra: dict = {}  # shared by all renders: kernels depend only on lens shape, radius and canvas
    _cached_bytes = 0

    def __init__(self, height: int, width: int, lens: LensSettings, device):
        self.height, self.width, self.lens, self.device = height, width, lens, device

    def scale_for(self, radius: float) -> int:
        d = self.lens.downsample_radius
        if d <= 0 or radius < 2 * d:
            return 1
        return 2 ** int(math.floor(math.log2(radius / d)))

    def _spectrum(self, scale: int, radius: float, front: bool, hp: int, wp: int) -> torch.Tensor:
        key = (str(self.device), self.lens.blades, self.lens.rotation_deg, scale, radius, front, hp, wp)
        if key not in self._spectra:
            spectrum = ap.kernel_spectra([radius / scale], hp, wp, self.lens.blades, self.lens.rotation_deg,
                                         flip=[front], device=self.device)[0]
            nbytes = spectrum.numel() * spectrum.element_size()
            if _Blur._cached_bytes + nbytes > SPECTRA_CACHE_BYTES:
                self._spectra.clear()
                _Blur._cached_bytes = 0
            self._spectra[key] = spectrum
            _Blur._cached_bytes += nbytes
        return self._spectra[key]

    def __call__(self, layers: torch.Tensor, radius: float, front: bool) -> torch.Tensor:
        scale = self.scale_for(radius)
        h, w = layers.shape[-2:]
        x = layers
        if scale > 1:
            x = F.interpolate(layers, size=(math.ceil(h / scale), math.ceil(w / scale)), mode="area")
        lh, lw = x.shape[-2:]
        half = int(math.ceil(radius / scale + 0.5))  # the kernel spans [-half, half]
        # canvas: no wrap-around into the image (>= size + half) and room for the whole kernel; rounded up
        # to multiples of 16 so cuFFT plans and kernel spectra get reused across layers and calls
        hp = ap.fast_fft_size(_round_up(max(lh + half + 1, 2 * half + 2), 16))
        wp = ap.fast_fft_size(_round_up(max(lw + half + 1, 2 * half + 2), 16))
        spectrum = torch.fft.rfft2(F.pad(x, (0, wp - lw, 0, hp - lh)))
        spectrum *= self._spectrum(scale, radius, front, hp, wp)
        out = torch.fft.irfft2(spectrum, s=(hp, wp))[..., :lh, :lw]
        if scale > 1:
            out = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False)
        return out


def _auto_focus_batch(height: int, width: int, device) -> int:
    per_focus = 4 * 4 * (height + 64) * (width + 64) * 10  # bytes: acc, layer, spectrum, temporaries
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return max(1, min(32, int(free * 0.5 // per_focus)))
    return max(1, min(4, int(2e9 // per_focus)))


def render(image: torch.Tensor, inv_depth: torch.Tensor, focus_inv, lens: LensSettings = LensSettings(),
           focus_batch: Optional[int] = None, on_step: Optional[Callable[[], None]] = None,
           on_focus_done: Optional[Callable[[int], None]] = None) -> torch.Tensor:
    """Render one image at F focus settings.

    image: [H, W, 3] float 0..1 (ComfyUI layout); inv_depth: [H, W] inverse depth (see defocus.py);
    focus_inv: float or sequence/1-D tensor of F focal-plane inverse depths.
    Returns [F, H, W, 3] on the image's device. `on_step` is called after every layer (interrupt checks),
    `on_focus_done(n)` after each batch of n focus settings (progress).
    """
    if image.dim() != 3:
        raise ValueError(f"image must be [H, W, 3], got {tuple(image.shape)}")
    return render_batch(image.unsqueeze(0), inv_depth.unsqueeze(0), focus_inv, lens, focus_batch, on_step,
                        on_focus_done)


def render_batch(images: torch.Tensor, inv_depth: torch.Tensor, focus_inv, lens: LensSettings = LensSettings(),
                 focus_batch: Optional[int] = None, on_step: Optional[Callable[[], None]] = None,
                 on_focus_done: Optional[Callable[[int], None]] = None) -> torch.Tensor:
    """Render F outputs: images [M, H, W, 3] with inverse depths [M, H, W], M = 1 (one image, F focus
    settings: a focal stack) or M = F (frame i at focus i: a video)."""
    if images.dim() != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be [M, H, W, 3], got {tuple(images.shape)}")
    if inv_depth.shape != images.shape[:3]:
        raise ValueError(f"depth {tuple(inv_depth.shape)} and images {tuple(images.shape[:3])} sizes differ")
    device = images.device
    focus = torch.as_tensor(focus_inv, dtype=torch.float32).reshape(-1).to(device)
    if images.shape[0] not in (1, focus.numel()):
        raise ValueError(f"{images.shape[0]} images for {focus.numel()} focus settings")
    h, w = images.shape[1:3]
    rgb = images.permute(0, 3, 1, 2).float().clamp(0, 1)
    if lens.linear_light:
        rgb = rgb.pow(GAMMA)
    rgba = torch.cat([rgb, torch.ones_like(rgb[:, :1])], 1)  # [M, 4, H, W]
    inv = inv_depth.to(device=device, dtype=torch.float32)
    radii = radius_ladder(max(float(lens.max_coc) / 2, 0.0))
    blur = _Blur(h, w, lens, device)
    batch = focus_batch or _auto_focus_batch(h, w, device)
    outputs = []
    for start in range(0, focus.numel(), batch):
        chunk = slice(start, start + batch)
        per_frame = slice(None) if images.shape[0] == 1 else chunk
        outputs.append(_render_chunk(rgba[per_frame], inv[per_frame], focus[chunk], lens, radii, blur, on_step))
        if on_focus_done is not None:
            on_focus_done(focus[chunk].numel())
    out = torch.cat(outputs, 0)
    if lens.linear_light:
        out = out.clamp(min=0).pow(1.0 / GAMMA)
    return out.clamp(0, 1).permute(0, 2, 3, 1).contiguous()


def layer_indices(inv: torch.Tensor, focus: torch.Tensor, lens: LensSettings, edges: torch.Tensor,
                  n_side: int) -> torch.Tensor:
    """[F, H, W] layer index per pixel: 0 = farthest behind focus, n_side = in focus, 2·n_side = nearest.

    inv: [H, W] or [1 or F, H, W] inverse depth."""
    radius = (lens.aperture_k / 2) * (inv.reshape(-1, *inv.shape[-2:]) - focus.view(-1, 1, 1))
    radius = radius.clamp(-lens.max_coc / 2, lens.max_coc / 2)
    magnitude = torch.bucketize(radius.abs(), edges)  # 0..n_side
    return (n_side + torch.sign(radius).to(magnitude.dtype) * magnitude).to(torch.int64)


def _occupancy(layer_id: torch.Tensor, n_layers: int) -> tuple:
    """Which rows / columns each (focus, layer) touches: bool [F, L, H] and [F, L, W], on the CPU.

    Two bincounts and one host transfer per chunk; the layer loop then crops every layer to its bounding
    box without further synchronisation.
    """
    n_focus, h, w = layer_id.shape
    device = layer_id.device
    fl = layer_id + torch.arange(n_focus, device=device).view(-1, 1, 1) * n_layers
    rows = torch.bincount((fl * h + torch.arange(h, device=device).view(1, -1, 1)).reshape(-1),
                          minlength=n_focus * n_layers * h) > 0
    cols = torch.bincount((fl * w + torch.arange(w, device=device).view(1, 1, -1)).reshape(-1),
                          minlength=n_focus * n_layers * w) > 0
    return rows.view(n_focus, n_layers, h).cpu(), cols.view(n_focus, n_layers, w).cpu()


def _extents(used: torch.Tensor) -> tuple:
    """First and one-past-last True index along the last dim of a bool tensor (0, 0 where none)."""
    size = used.shape[-1]
    first = used.to(torch.uint8).argmax(-1)
    last = size - used.flip(-1).to(torch.uint8).argmax(-1)
    return first, last


# Per-group fixed cost, in pixels of work it equals: kernel launches dominate small crops on a GPU.
GROUP_OVERHEAD_PX = {"cuda": 1_000_000, "cpu": 50_000}


def group_by_overlap(boxes: list, overhead_px: float) -> list:
    """Greedily merge items whose crops overlap into groups rendered as one batch on their union crop.

    boxes: [(item, y0, y1, x0, x1)]. Cost of a group = overhead + n_items × union area; an item joins the
    previous group (items sorted by crop centre) when that is cheaper than starting a new one.
    Returns [([items], (y0, y1, x0, x1))].
    """
    def area(b):
        return (b[1] - b[0]) * (b[3] - b[2])

    groups = []
    for item, y0, y1, x0, x1 in sorted(boxes, key=lambda b: (b[1] + b[2], b[3] + b[4])):
        box = (y0, y1, x0, x1)
        if groups:
            items, gbox = groups[-1]
            union = (min(gbox[0], y0), max(gbox[1], y1), min(gbox[2], x0), max(gbox[3], x1))
            merged = (len(items) + 1) * area(union)
            apart = len(items) * area(gbox) + overhead_px + area(box)
            if merged <= apart:
                groups[-1] = (items + [item], union)
                continue
        groups.append(([item], box))
    return groups


def _render_chunk(rgba, inv, focus, lens, radii, blur, on_step) -> torch.Tensor:
    """rgba [M, 4, H, W] (linear, alpha 1), inv [M, H, W] with M = 1 or F → [F, 3, H, W]."""
    n_focus = focus.numel()
    h, w = inv.shape[-2:]
    n_side = len(radii) - 1
    n_layers = 2 * n_side + 1
    edges = _layer_edges(radii, inv.device)
    layer_id = layer_indices(inv, focus, lens, edges, n_side)
    rows, cols = _occupancy(layer_id, n_layers)
    occupied = rows.any(-1)
    (y_first, y_end), (x_first, x_end) = _extents(rows), _extents(cols)
    overhead = GROUP_OVERHEAD_PX.get(inv.device.type, GROUP_OVERHEAD_PX["cuda"])
    acc = torch.zeros(n_focus, 4, h, w, device=inv.device, dtype=torch.float32)
    for layer in range(n_layers):  # back to front
        which = occupied[:, layer].nonzero().flatten().tolist()
        if not which:
            continue
        side = layer - n_side
        radius = radii[abs(side)]
        blurred = radius >= ap.DELTA_RADIUS
        # work only inside each layer's bounding box, grown by the blur's reach (its spread + the hole fill)
        margin = int(math.ceil(2 * radius)) + 2 if blurred else 0
        boxes = [(f, max(int(y_first[f, layer]) - margin, 0), min(int(y_end[f, layer]) + margin, h),
                  max(int(x_first[f, layer]) - margin, 0), min(int(x_end[f, layer]) + margin, w)) for f in which]
        for items, (y0, y1, x0, x1) in group_by_overlap(boxes, overhead):
            ys, xs = slice(y0, y1), slice(x0, x1)
            sel = slice(None) if len(items) == n_focus else torch.tensor(sorted(items), device=inv.device)
            mask = (layer_id[sel, ys, xs] == layer).unsqueeze(1).float()  # [n, 1, h', w']
            source = rgba[:, :, ys, xs] if rgba.shape[0] == 1 else rgba[sel, :, ys, xs]
            content = source * mask
            below = acc[sel, :, ys, xs]
            if blurred:
                below = fill_holes(below)
                layer_rgba = blur(content, radius, front=side > 0).clamp_(min=0.0)
            else:
                layer_rgba = content
            # "over" on premultiplied RGBA: the same formula for colour and alpha
            acc[sel, :, ys, xs] = torch.addcmul(layer_rgba, (1.0 - layer_rgba[:, 3:]).clamp_(min=0.0), below)
        if on_step is not None:
            on_step()
    alpha = acc[:, 3:]
    return torch.where(alpha > 1e-6, acc[:, :3] / alpha.clamp(min=1e-6), torch.zeros_like(acc[:, :3]))
