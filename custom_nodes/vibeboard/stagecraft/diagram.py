"""Top-down blocking diagram (Shot Designer style) as SVG text and as an IMAGE: set outline, props, actors
with facing arrows and their path through the beats, cameras with their field-of-view wedge, the line of
action. Plan coordinates: x to the right, -z up the page."""
from __future__ import annotations

import math

import numpy as np

from .blocking import Blocking
from .previz import actor_colour

WEDGE_M = 2.0  # drawn length of a camera's field-of-view wedge


def _layout(doc: Blocking, frame: int, size: int):
    pts = [doc.actor_position(a, f)[[0, 2]] for a in doc.actor_names() for f in range(sum(
        int(b["frames"]) for b in doc.data["beats"]))]
    pts += [doc.camera_c2w(c["name"], frame)[:3, 3][[0, 2]] for c in doc.data["cameras"]]
    w, d = (float(v) for v in doc.data["set"].get("size", [8, 8]))
    pts += [np.array([-w / 2, 0.0]), np.array([w / 2, -d])]
    pts = np.array(pts)
    lo, hi = pts.min(0) - 0.8, pts.max(0) + 0.8
    scale = (size - 20) / max(hi[0] - lo[0], hi[1] - lo[1])
    return lambda p: (10 + (p[0] - lo[0]) * scale, 10 + (p[1] - lo[1]) * scale), scale  # -z up the page


def _cameras(doc, frame, to_px):
    out = []
    for cam in doc.data["cameras"]:
        c2w = doc.camera_c2w(cam["name"], frame)
        pos = c2w[:3, 3]
        fwd = c2w[:3, 2].copy()
        fwd[1] = 0
        fwd /= max(np.linalg.norm(fwd), 1e-9)
        half = math.radians(doc.hfov(cam["name"]) / 2)
        side = np.array([-fwd[2], 0, fwd[0]])
        left = pos + WEDGE_M * (math.cos(half) * fwd - math.sin(half) * side)
        right = pos + WEDGE_M * (math.cos(half) * fwd + math.sin(half) * side)
        out.append((cam["name"], to_px(pos[[0, 2]]), to_px(left[[0, 2]]), to_px(right[[0, 2]])))
    return out


def svg(doc, frame: int = 0, size: int = 512) -> str:
    doc = Blocking.parse(doc)
    to_px, scale = _layout(doc, frame, size)
    w, d = (float(v) for v in doc.data["set"].get("size", [8, 8]))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" viewBox="0 0 {size} {size}">',
             f'<rect width="{size}" height="{size}" fill="#ffffff"/>']
    (x0, y0), (x1, y1) = to_px((-w / 2, 0.0)), to_px((w / 2, -d))
    parts.append(f'<rect x="{min(x0, x1):.1f}" y="{min(y0, y1):.1f}" width="{abs(x1 - x0):.1f}" '
                 f'height="{abs(y1 - y0):.1f}" fill="none" stroke="#444" stroke-width="2"/>')
    for p in doc.data["set"]["props"]:
        (px, py) = to_px(p["position"])
        sw, sd = float(p["size"][0]) * scale, float(p["size"][2]) * scale
        parts.append(f'<rect x="{px - sw / 2:.1f}" y="{py - sd / 2:.1f}" width="{sw:.1f}" height="{sd:.1f}" '
                     f'fill="#b89e73" transform="rotate({-float(p.get("yaw", 0)):.1f} {px:.1f} {py:.1f})">'
                     f'<title>{p["name"]}</title></rect>')
    loa = doc.data.get("line_of_action")
    if loa:
        (ax, ay), (bx, by) = (to_px(doc.actor_position(n, frame)[[0, 2]]) for n in loa)
        dx, dy = bx - ax, by - ay
        parts.append(f'<line x1="{ax - dx:.1f}" y1="{ay - dy:.1f}" x2="{bx + dx:.1f}" y2="{by + dy:.1f}" '
                     'stroke="#d33" stroke-dasharray="6 4" stroke-width="1.5"/>')
    total = sum(int(b["frames"]) for b in doc.data["beats"])
    for i, name in enumerate(doc.actor_names()):
        colour = "#%02x%02x%02x" % tuple(int(c * 255) for c in actor_colour(i))
        trail = " ".join("%.1f,%.1f" % to_px(doc.actor_position(name, f)[[0, 2]]) for f in range(total))
        parts.append(f'<polyline points="{trail}" fill="none" stroke="{colour}" stroke-opacity="0.5"/>')
        (cx, cy) = to_px(doc.actor_position(name, frame)[[0, 2]])
        f = doc.actor_facing(name, frame)
        parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{0.25 * scale:.1f}" fill="{colour}"/>')
        parts.append(f'<line x1="{cx:.1f}" y1="{cy:.1f}" x2="{cx + f[0] * 0.5 * scale:.1f}" '
                     f'y2="{cy + f[2] * 0.5 * scale:.1f}" stroke="#000" stroke-width="2"/>')
        parts.append(f'<text x="{cx + 0.3 * scale:.1f}" y="{cy:.1f}" font-size="12">{name}</text>')
    for name, pos, left, right in _cameras(doc, frame, to_px):
        parts.append(f'<polygon points="{pos[0]:.1f},{pos[1]:.1f} {left[0]:.1f},{left[1]:.1f} '
                     f'{right[0]:.1f},{right[1]:.1f}" fill="#3a7bd5" fill-opacity="0.18" stroke="#3a7bd5"/>')
        parts.append(f'<text x="{pos[0] + 4:.1f}" y="{pos[1] + 14:.1f}" font-size="12" fill="#3a7bd5">{name}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def image(doc, frame: int = 0, size: int = 512) -> np.ndarray:
    """The same diagram drawn with PIL: uint8 [size, size, 3]."""
    from PIL import Image, ImageDraw

    doc = Blocking.parse(doc)
    to_px, scale = _layout(doc, frame, size)
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img, "RGBA")
    w, d = (float(v) for v in doc.data["set"].get("size", [8, 8]))
    (x0, y0), (x1, y1) = to_px((-w / 2, 0.0)), to_px((w / 2, -d))
    draw.rectangle([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], outline=(68, 68, 68), width=2)
    for p in doc.data["set"]["props"]:
        px, py = to_px(p["position"])
        sw, sd = float(p["size"][0]) * scale / 2, float(p["size"][2]) * scale / 2
        draw.rectangle([px - sw, py - sd, px + sw, py + sd], fill=(184, 158, 115))
    loa = doc.data.get("line_of_action")
    if loa:
        (ax, ay), (bx, by) = (to_px(doc.actor_position(n, frame)[[0, 2]]) for n in loa)
        draw.line([ax - (bx - ax), ay - (by - ay), bx + (bx - ax), by + (by - ay)], fill=(221, 51, 51), width=1)
    for name, pos, left, right in _cameras(doc, frame, to_px):
        draw.polygon([pos, left, right], fill=(58, 123, 213, 46), outline=(58, 123, 213))
        draw.text((pos[0] + 4, pos[1] + 4), name, fill=(58, 123, 213))
    for i, name in enumerate(doc.actor_names()):
        colour = tuple(int(c * 255) for c in actor_colour(i))
        cx, cy = to_px(doc.actor_position(name, frame)[[0, 2]])
        r = 0.25 * scale
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
        f = doc.actor_facing(name, frame)
        draw.line([cx, cy, cx + f[0] * 0.5 * scale, cy + f[2] * 0.5 * scale], fill=(0, 0, 0), width=2)
        draw.text((cx + r + 2, cy - 6), name, fill=(0, 0, 0))
    return np.asarray(img)
