"""Blocking document: set, actors and props with positions per beat, cameras with lenses, shots.

JSON, versioned (`"format": "vibeboard.blocking", "version": 1`). Units are metres in the set's frame, which
is the scene GLB's (glTF: Y up, floor y = 0); plan positions are [x, z]. Angles are degrees about +Y seen
from above, counter-clockwise, 0 = +X — so 90 faces -Z (up the page of the top-down diagram).

    {"format": "vibeboard.blocking", "version": 1, "fps": 24, "width": 640, "height": 360,
     "set": {"name": "kitchen", "glb": "", "size": [6, 5], "props": [{"name": "table", "position": [0, -2],
             "size": [1.2, 0.75, 0.8], "yaw": 0}]},
     "actors": [{"name": "bob", "height": 1.8}, {"name": "alice", "height": 1.65}],
     "cameras": [{"name": "A", "focal_mm": 35, "sensor_mm": [36, 24]}],
     "line_of_action": ["bob", "alice"],
     "beats": [{"name": "enter", "frames": 24,
                "actors": {"bob": {"position": [-1, -2], "look_at": "alice"}, "alice": {"position": [1, -2]}},
                "cameras": {"A": {"position": [0, 1.6, 2], "look_at": [0, 1.2, -2]}}}],
     "shots": [{"name": "1", "camera": "A", "beats": ["enter"], "subject": "bob"}]}

Each beat gives where everyone is at the *end* of the beat; during the beat they move there in a straight line
from where the previous beat left them (the first beat holds its positions). A camera's `look_at` is a point
or an actor's name (their eye line: 0.93 × height). Lens: horizontal field of view = 2·atan(sensor_w / 2f).
"""
from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass

import numpy as np

FORMAT = "vibeboard.blocking"
VERSION = 1
EYE = 0.93  # eye height as a fraction of body height
ACTOR_WIDTH, ACTOR_DEPTH = 0.5, 0.3


class BlockingError(ValueError):
    """A blocking document that does not parse; the message names the field."""


def hfov_deg(focal_mm: float, sensor_w_mm: float) -> float:
    return math.degrees(2 * math.atan(sensor_w_mm / (2 * focal_mm)))


def look_at_c2w(position, target, up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """OpenCV camera-to-world (x right, y down, z forward) at `position` looking at `target`."""
    pos, tgt = np.asarray(position, float), np.asarray(target, float)
    f = tgt - pos
    if np.linalg.norm(f) < 1e-9:
        raise BlockingError("a camera looks at its own position")
    f /= np.linalg.norm(f)
    right = np.cross(f, np.asarray(up, float))
    if np.linalg.norm(right) < 1e-9:  # looking straight up/down: any right vector
        right = np.array([1.0, 0.0, 0.0])
    right /= np.linalg.norm(right)
    down = np.cross(f, right)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, down, f, pos
    return m


def facing_vector(deg: float) -> np.ndarray:
    r = math.radians(deg)
    return np.array([math.cos(r), 0.0, -math.sin(r)])


@dataclass
class Blocking:
    data: dict

    # --- parsing ---------------------------------------------------------------------------------
    @classmethod
    def parse(cls, value) -> "Blocking":
        if isinstance(value, Blocking):
            return value
        try:
            data = json.loads(value) if isinstance(value, (str, bytes)) else copy.deepcopy(value)
        except ValueError as exc:
            raise BlockingError(f"not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise BlockingError("a blocking document is a JSON object")
        if data.get("format", FORMAT) != FORMAT:
            raise BlockingError(f"format must be {FORMAT!r}")
        if int(data.get("version", VERSION)) > VERSION:
            raise BlockingError(f"version {data['version']} is newer than this reader ({VERSION})")
        doc = cls(data)
        doc._validate()
        return doc

    def _validate(self):
        d = self.data
        d.setdefault("fps", 24)
        d.setdefault("width", 640)
        d.setdefault("height", 360)
        d.setdefault("set", {})
        d["set"].setdefault("props", [])
        for key in ("actors", "cameras", "beats", "shots"):
            if not isinstance(d.get(key), list) or not d[key]:
                raise BlockingError(f"'{key}' must be a non-empty list")
        names = {}
        for kind in ("actors", "cameras"):
            for i, item in enumerate(d[kind]):
                if not isinstance(item, dict) or not str(item.get("name", "")).strip():
                    raise BlockingError(f"{kind}[{i}] needs a name")
                names.setdefault(kind, set()).add(item["name"])
        for i, cam in enumerate(d["cameras"]):
            f = float(cam.setdefault("focal_mm", 35.0))
            sensor = cam.setdefault("sensor_mm", [36.0, 24.0])
            if f <= 0 or not (isinstance(sensor, list) and len(sensor) == 2 and min(sensor) > 0):
                raise BlockingError(f"cameras[{i}] ({cam['name']}): focal_mm > 0 and sensor_mm [w, h] > 0 needed")
        for i, actor in enumerate(d["actors"]):
            actor.setdefault("height", 1.75)
        beat_names = set()
        for i, beat in enumerate(d["beats"]):
            if not isinstance(beat, dict) or not beat.get("name"):
                raise BlockingError(f"beats[{i}] needs a name")
            if int(beat.get("frames", 0)) < 1:
                raise BlockingError(f"beats[{i}] ({beat['name']}): frames must be ≥ 1")
            beat_names.add(beat["name"])
            for who in beat.get("actors", {}):
                if who not in names["actors"]:
                    raise BlockingError(f"beats[{i}] ({beat['name']}): unknown actor {who!r}")
                entry = beat["actors"][who]
                pos = entry.get("position")
                if pos is not None and (not isinstance(pos, list) or len(pos) != 2):
                    raise BlockingError(f"beats[{i}].actors.{who}.position must be [x, z]")
                if "facing" in entry and not isinstance(entry["facing"], (int, float)):
                    raise BlockingError(f"beats[{i}].actors.{who}.facing must be degrees (a number)")
                target = entry.get("look_at")
                if target is not None and target not in names["actors"] and \
                        target not in {p.get("name") for p in d["set"]["props"]}:
                    raise BlockingError(f"beats[{i}].actors.{who}.look_at: no actor or prop named {target!r}")
            for cam in beat.get("cameras", {}):
                if cam not in names["cameras"]:
                    raise BlockingError(f"beats[{i}] ({beat['name']}): unknown camera {cam!r}")
        first = d["beats"][0]
        for actor in d["actors"]:
            if "position" not in first.get("actors", {}).get(actor["name"], {}):
                raise BlockingError(f"beats[0] must place every actor (missing {actor['name']!r})")
        for cam in d["cameras"]:
            if not any(cam["name"] in b.get("cameras", {}) for b in d["beats"]):
                raise BlockingError(f"camera {cam['name']!r} is never placed in any beat")
        for i, shot in enumerate(d["shots"]):
            if shot.get("camera") not in names["cameras"]:
                raise BlockingError(f"shots[{i}]: unknown camera {shot.get('camera')!r}")
            missing = [b for b in shot.get("beats", []) if b not in beat_names]
            if not shot.get("beats") or missing:
                raise BlockingError(f"shots[{i}]: beats must name existing beats (unknown: {missing})")
            shot.setdefault("name", str(i + 1))
        loa = d.get("line_of_action")
        if loa is not None and (len(loa) != 2 or any(a not in names["actors"] for a in loa)):
            raise BlockingError("line_of_action must name two actors")

    def to_json(self) -> str:
        return json.dumps(self.data, indent=1)

    # --- timing ----------------------------------------------------------------------------------
    @property
    def fps(self) -> float:
        return float(self.data["fps"])

    def beat_ranges(self) -> dict:
        """beat name → (first frame, frame count) on the whole scene's timeline."""
        out, start = {}, 0
        for beat in self.data["beats"]:
            out[beat["name"]] = (start, int(beat["frames"]))
            start += int(beat["frames"])
        return out

    def shot_frames(self, shot) -> list:
        ranges = self.beat_ranges()
        return [f for b in self.shot(shot)["beats"] for f in range(ranges[b][0], ranges[b][0] + ranges[b][1])]

    def shot(self, name) -> dict:
        for s in self.data["shots"]:
            if str(s["name"]) == str(name):
                return s
        raise BlockingError(f"no shot named {name!r}")

    def beat_at(self, frame: int) -> tuple:
        """(beat index, fraction 0..1 through it)."""
        start = 0
        for i, beat in enumerate(self.data["beats"]):
            n = int(beat["frames"])
            if frame < start + n:
                return i, (frame - start + 1) / n
            start += n
        return len(self.data["beats"]) - 1, 1.0

    # --- state at a frame ------------------------------------------------------------------------
    def _keys(self, kind: str, name: str, field: str) -> list:
        """Per beat, the value set for (kind, name, field) at its end, carried forward when not set."""
        out, last = [], None
        for beat in self.data["beats"]:
            entry = beat.get(kind, {}).get(name, {})
            if field in entry:
                last = entry[field]
            out.append(last)
        first = next((v for v in out if v is not None), None)
        return [first if v is None else v for v in out]

    def _interp(self, kind, name, field, frame):
        keys = self._keys(kind, name, field)
        i, a = self.beat_at(frame)
        end = keys[i]
        start = keys[i - 1] if i > 0 else end
        if end is None:
            return None
        if isinstance(end, str) or isinstance(start, str):
            return end
        return [(1 - a) * float(p) + a * float(q) for p, q in zip(start, end)]

    def actor(self, name: str) -> dict:
        return next(a for a in self.data["actors"] if a["name"] == name)

    def actor_position(self, name: str, frame: int) -> np.ndarray:
        x, z = self._interp("actors", name, "position", frame)
        return np.array([x, 0.0, z])

    def _orientation(self, name: str, frame: int):
        """The actor's orientation rule at a frame: the latest beat up to the current one that sets `look_at` or
        `facing` decides (("look_at", target) or ("facing", degrees)); None when no beat has set either yet.
        A turn between two `facing` values happens during the beat that sets the new one."""
        i, a = self.beat_at(frame)
        previous = None
        for j, beat in enumerate(self.data["beats"][:i + 1]):
            entry = beat.get("actors", {}).get(name, {})
            rule = ("look_at", entry["look_at"]) if "look_at" in entry else \
                ("facing", float(entry["facing"])) if "facing" in entry else None
            if rule is None:
                continue
            if j == i and rule[0] == "facing" and previous is not None and previous[0] == "facing":
                turn = (rule[1] - previous[1] + 180.0) % 360.0 - 180.0  # the short way round
                rule = ("facing", previous[1] + a * turn)
            previous = rule
        return previous

    def actor_facing(self, name: str, frame: int) -> np.ndarray:
        """Unit direction on the floor the actor faces: per the latest `look_at` / `facing` (see _orientation),
        else the direction of travel, else +X."""
        here = self.actor_position(name, frame)
        rule = self._orientation(name, frame)
        if rule is not None and rule[0] == "look_at":
            target = str(rule[1])
            there = self.actor_position(target, frame) if target in self.actor_names() else self.prop_position(target)
            v = there - here
            if np.linalg.norm(v) > 1e-9:
                return v / np.linalg.norm(v)
        if rule is not None and rule[0] == "facing":
            return facing_vector(rule[1])
        if frame > 0:
            v = here - self.actor_position(name, frame - 1)
            if np.linalg.norm(v) > 1e-9:
                return v / np.linalg.norm(v)
        return np.array([1.0, 0.0, 0.0])

    def actor_names(self) -> list:
        return [a["name"] for a in self.data["actors"]]

    def prop_position(self, name: str) -> np.ndarray:
        for p in self.data["set"]["props"]:
            if p["name"] == name:
                return np.array([p["position"][0], 0.0, p["position"][1]])
        raise BlockingError(f"no actor or prop named {name!r}")

    def eye(self, name: str, frame: int) -> np.ndarray:
        return self.actor_position(name, frame) + np.array([0.0, EYE * float(self.actor(name)["height"]), 0.0])

    def camera(self, name: str) -> dict:
        return next(c for c in self.data["cameras"] if c["name"] == name)

    def camera_c2w(self, name: str, frame: int) -> np.ndarray:
        pos = self._interp("cameras", name, "position", frame)
        target = self._interp("cameras", name, "look_at", frame)
        if pos is None or target is None:
            raise BlockingError(f"camera {name!r} needs a position and a look_at")
        if isinstance(target, str):
            target = self.eye(target, frame) if target in self.actor_names() else self.prop_position(target)
        return look_at_c2w(pos, target)

    def intrinsics(self, name: str, width: int | None = None, height: int | None = None) -> tuple:
        """(fx, fy, cx, cy) for the document's frame size: horizontal FOV from focal length + sensor width."""
        cam = self.camera(name)
        w = int(width or self.data["width"])
        h = int(height or self.data["height"])
        fx = w * float(cam["focal_mm"]) / float(cam["sensor_mm"][0])
        return fx, fx, (w - 1) / 2.0, (h - 1) / 2.0

    def hfov(self, name: str) -> float:
        cam = self.camera(name)
        return hfov_deg(float(cam["focal_mm"]), float(cam["sensor_mm"][0]))

    def actor_box(self, name: str, frame: int) -> np.ndarray:
        """The actor's proxy: 8 corners [8, 3] of an upright box facing where they face."""
        pos = self.actor_position(name, frame)
        fwd = self.actor_facing(name, frame)
        side = np.array([-fwd[2], 0.0, fwd[0]])
        h = float(self.actor(name)["height"])
        return np.array([pos + sx * ACTOR_DEPTH / 2 * fwd + sz * ACTOR_WIDTH / 2 * side + np.array([0, y, 0])
                         for sx in (-1, 1) for sz in (-1, 1) for y in (0.0, h)])


def project(points: np.ndarray, c2w: np.ndarray, k: tuple) -> tuple:
    """World points [N, 3] → (pixels [N, 2], depth [N])."""
    w2c = np.linalg.inv(c2w)
    cam = points @ w2c[:3, :3].T + w2c[:3, 3]
    z = cam[:, 2]
    fx, fy, cx, cy = k
    safe = np.where(np.abs(z) < 1e-9, 1e-9, z)
    return np.stack([cam[:, 0] / safe * fx + cx, cam[:, 1] / safe * fy + cy], -1), z
