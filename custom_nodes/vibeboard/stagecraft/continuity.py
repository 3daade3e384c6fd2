"""Continuity checker: flags editing-grammar problems between consecutive shots *before* anything is rendered.

Rules, evaluated at each cut (shot 1's last frame against shot 2's first frame):
- 180° rule: both cameras must stay on one side of the line of action (the document's `line_of_action`
  pair, or the shot's own). A camera on the line is neutral and never flagged.
- 30° / jump cut: two shots of the same subject whose viewpoints differ by less than 30° (seen from the
  subject) and whose framing is about the same size (subject height in frame within ±25 %) jump.
- Eyeline match: when X looks at Y in shot 1 and Y looks back at X in shot 2, their gazes must point opposite
  ways on screen.
- Screen direction: an actor moving in both shots must keep moving the same way on screen.
Each warning names the rule, the beat at the cut, the cameras and the shots.
"""
from __future__ import annotations

import math

import numpy as np

from .blocking import Blocking, project

JUMP_ANGLE_DEG = 30.0
SAME_SIZE = 1.25
MIN_SPEED = 1e-4  # metres per frame: slower counts as standing


def _side(doc: Blocking, pair, cam: str, frame: int) -> float:
    a, b = doc.actor_position(pair[0], frame), doc.actor_position(pair[1], frame)
    c = doc.camera_c2w(cam, frame)[:3, 3]
    ab, ac = b - a, c - a
    cross = ab[0] * ac[2] - ab[2] * ac[0]
    scale = np.linalg.norm(ab[[0, 2]]) * np.linalg.norm(ac[[0, 2]])
    return 0.0 if scale < 1e-9 or abs(cross) / scale < 0.05 else float(np.sign(cross))


def _subject(doc: Blocking, shot: dict, frame: int) -> str:
    """The shot's subject, else the actor closest to the camera's optical axis."""
    if shot.get("subject"):
        return shot["subject"]
    c2w = doc.camera_c2w(shot["camera"], frame)
    best, name = None, doc.actor_names()[0]
    for actor in doc.actor_names():
        v = doc.eye(actor, frame) - c2w[:3, 3]
        ang = math.acos(np.clip(v @ c2w[:3, 2] / max(np.linalg.norm(v), 1e-9), -1, 1))
        if best is None or ang < best:
            best, name = ang, actor
    return name


def _frame_size(doc: Blocking, shot: dict, actor: str, frame: int) -> float:
    """Subject height as a fraction of the frame height."""
    c2w = doc.camera_c2w(shot["camera"], frame)
    dist = np.linalg.norm(doc.eye(actor, frame) - c2w[:3, 3])
    fx = doc.intrinsics(shot["camera"])[1]
    return float(doc.actor(actor)["height"]) * fx / max(dist, 1e-6) / float(doc.data["height"])


def _screen_dx(doc: Blocking, cam: str, frame: int, origin: np.ndarray, direction: np.ndarray) -> float:
    c2w = doc.camera_c2w(cam, frame)
    px, _ = project(np.stack([origin, origin + 0.25 * direction]), c2w, doc.intrinsics(cam))
    return float(px[1, 0] - px[0, 0])


def _looks_at(doc: Blocking, who: str, other: str, frame: int) -> bool:
    v = doc.actor_position(other, frame) - doc.actor_position(who, frame)
    n = np.linalg.norm(v)
    return n > 1e-6 and float(doc.actor_facing(who, frame) @ (v / n)) > math.cos(math.radians(30))


def check(doc) -> dict:
    doc = Blocking.parse(doc)
    shots = doc.data["shots"]
    warnings = []
    for s1, s2 in zip(shots, shots[1:]):
        f1, f2 = doc.shot_frames(s1["name"])[-1], doc.shot_frames(s2["name"])[0]
        beat = doc.data["beats"][doc.beat_at(f2)[0]]["name"]
        c1, c2 = s1["camera"], s2["camera"]
        base = {"beat": beat, "cameras": [c1, c2], "shots": [s1["name"], s2["name"]]}
        pair = s2.get("line_of_action") or s1.get("line_of_action") or doc.data.get("line_of_action")
        if pair:
            a, b = _side(doc, pair, c1, f1), _side(doc, pair, c2, f2)
            if a * b < 0:
                warnings.append({**base, "rule": "180",
                                 "message": f"180° rule crossed ({c1}→{c2}) at beat '{beat}': the cameras are on "
                                            f"opposite sides of the {pair[0]}–{pair[1]} line"})
        sub1, sub2 = _subject(doc, s1, f1), _subject(doc, s2, f2)
        if sub1 == sub2:
            v1 = doc.camera_c2w(c1, f1)[:3, 3] - doc.eye(sub1, f1)
            v2 = doc.camera_c2w(c2, f2)[:3, 3] - doc.eye(sub2, f2)
            angle = math.degrees(math.acos(np.clip(v1 @ v2 / (np.linalg.norm(v1) * np.linalg.norm(v2)), -1, 1)))
            r = _frame_size(doc, s1, sub1, f1) / max(_frame_size(doc, s2, sub2, f2), 1e-9)
            if angle < JUMP_ANGLE_DEG and 1 / SAME_SIZE <= r <= SAME_SIZE:
                warnings.append({**base, "rule": "30",
                                 "message": f"jump cut ({c1}→{c2}) at beat '{beat}': {sub1} seen from only "
                                            f"{angle:.0f}° apart at the same size (change the angle by ≥ 30° or "
                                            f"the shot size)"})
        elif _looks_at(doc, sub1, sub2, f1) and _looks_at(doc, sub2, sub1, f2):
            g1 = _screen_dx(doc, c1, f1, doc.eye(sub1, f1), doc.actor_facing(sub1, f1))
            g2 = _screen_dx(doc, c2, f2, doc.eye(sub2, f2), doc.actor_facing(sub2, f2))
            if g1 * g2 > 0:
                warnings.append({**base, "rule": "eyeline",
                                 "message": f"eyeline mismatch ({c1}→{c2}) at beat '{beat}': {sub1} and {sub2} "
                                            f"look the same way on screen"})
        for actor in doc.actor_names():
            m1 = doc.actor_position(actor, f1) - doc.actor_position(actor, max(f1 - 1, 0))
            m2 = doc.actor_position(actor, min(f2 + 1, doc.shot_frames(s2["name"])[-1])) - \
                doc.actor_position(actor, f2)
            if np.linalg.norm(m1) < MIN_SPEED or np.linalg.norm(m2) < MIN_SPEED:
                continue
            d1 = _screen_dx(doc, c1, f1, doc.actor_position(actor, f1), m1 / np.linalg.norm(m1))
            d2 = _screen_dx(doc, c2, f2, doc.actor_position(actor, f2), m2 / np.linalg.norm(m2))
            if d1 * d2 < 0 and abs(d1) > 0.5 and abs(d2) > 0.5:
                warnings.append({**base, "rule": "screen_direction",
                                 "message": f"screen direction reversed ({c1}→{c2}) at beat '{beat}': {actor} "
                                            f"moves {'right' if d1 > 0 else 'left'} then "
                                            f"{'right' if d2 > 0 else 'left'}"})
    return {"cuts": max(len(shots) - 1, 0), "warnings": warnings, "ok": not warnings}
