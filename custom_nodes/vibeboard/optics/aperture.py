"""Aperture (bokeh) kernels generated analytically: a disc, or a regular polygon of N blades.

Each pixel's weight is the area of the pixel the aperture covers, approximated from the signed distance
to the aperture's edge (clamp(sd + 0.5, 0, 1)), so edges are antialiased and a kernel grows smoothly with
its radius. Kernels are normalised to unit sum: blurring keeps brightness.
"""
from __future__ import annotations

import math

import torch

DELTA_RADIUS = 0.5  # below this the aperture is smaller than a pixel: the kernel is the identity


def coverage(x: torch.Tensor, y: torch.Tensor, radius: float, blades: int = 0,
             rotation_deg: float = 0.0) -> torch.Tensor:
    """Antialiased coverage of the aperture at pixel offsets (x right, y down), before normalisation.

    blades < 3 → disc of `radius`; otherwise a regular polygon with circumradius `radius`, one vertex at
    `rotation_deg` (counter-clockwise on screen, 0 = pointing right).
    """
    dist = torch.sqrt(x * x + y * y)
    if blades < 3:
        signed = radius - dist
    else:
        sector = 2.0 * math.pi / blades
        angle = torch.atan2(-y, x) - math.radians(rotation_deg)
        local = torch.remainder(angle, sector) - sector / 2  # angle from the nearest edge's normal
        signed = radius * math.cos(math.pi / blades) - dist * torch.cos(local)
    return (signed + 0.5).clamp(0.0, 1.0)


def kernel(radius: float, blades: int = 0, rotation_deg: float = 0.0,
           device=None, dtype=torch.float32) -> torch.Tensor:
    """Square [S, S] kernel (S odd) with unit sum; the identity for radius < DELTA_RADIUS."""
    if radius < DELTA_RADIUS:
        return torch.ones(1, 1, device=device, dtype=dtype)
    half = int(math.ceil(radius + 0.5))
    coords = torch.arange(-half, half + 1, device=device, dtype=torch.float64)
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    weights = coverage(x, y, float(radius), blades, rotation_deg)
    return (weights / weights.sum()).to(dtype)


def kernel_spectra(radii, height: int, width: int, blades: int = 0, rotation_deg: float = 0.0,
                   flip=None, device=None) -> torch.Tensor:
    """rfft2 of each kernel placed with its centre at (0, 0) of a [height, width] canvas → [K, H, W//2+1].

    `flip[i]` True rotates that kernel by 180° (a polygon seen in front of the focal plane is inverted).
    """
    canvases = torch.zeros(len(radii), height, width, device=device, dtype=torch.float32)
    for i, radius in enumerate(radii):
        k = kernel(float(radius), blades, rotation_deg + (180.0 if flip is not None and flip[i] else 0.0),
                   device=device)
        half = k.shape[0] // 2
        if k.shape[0] > min(height, width):
            raise ValueError(f"kernel radius {radius} too large for a {height}x{width} canvas")
        canvases[i, : k.shape[0], : k.shape[1]] = k
        canvases[i] = torch.roll(canvases[i], shifts=(-half, -half), dims=(0, 1))
    return torch.fft.rfft2(canvases)


def fast_fft_size(n: int) -> int:
    """Smallest m >= n whose prime factors are 2, 3, 5, 7 (sizes cuFFT and pocketfft handle fastest), even."""
    m = max(int(n), 2)
    while True:
        if m % 2 == 0:
            rest = m
            for p in (2, 3, 5, 7):
                while rest % p == 0:
                    rest //= p
            if rest == 1:
                return m
        m += 1
