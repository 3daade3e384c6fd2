"""Actor cards: an actor is defined once and performs in every shot.

A card lives in the project's asset database (Script Lab's `AssetDB`, migration 3): face references (front /
three-quarter / profile), generated turnarounds and wardrobe variations per script day (Qwen-Image-Edit from a
face reference), the voice (provider voice id, settings, seed) and the actor LoRAs trained from the card. Every
input records its licence; a LoRA's licences are the licences of the images it was trained on, so a card can say
whether anything built from it is safe to ship.
"""
from __future__ import annotations

import json
import os
import time
from typing import List, Optional

from ..assetdb import AssetDB, AssetDBError

FACE_KINDS = ("face_front", "face_three_quarter", "face_profile")
IMAGE_KINDS = FACE_KINDS + ("turnaround", "wardrobe", "extra")
# Turnaround views and the edit instruction that makes each from the front reference.
TURNAROUND_VIEWS = {
    "left_profile": "Show the same person in strict left profile, same face, hair, clothes and lighting, neutral "
                    "grey background.",
    "right_profile": "Show the same person in strict right profile, same face, hair, clothes and lighting, neutral "
                     "grey background.",
    "back": "Show the same person from behind, same hair, clothes and lighting, neutral grey background.",
    "three_quarter": "Turn the same person to a three-quarter view, same face, hair, clothes and lighting, neutral "
                     "grey background.",
}


class ActorCardError(AssetDBError):
    pass


def sha256_file(path: str) -> str:
    from ..media.files import file_fingerprint
    return file_fingerprint(path)


def _licence(value: str, what: str) -> str:
    value = (value or "").strip()
    if not value:
        # Training or generating from an image of unknown provenance is the failure a card exists to prevent.
        raise ActorCardError(f"{what}: a licence is required (e.g. 'own photo', 'CC-BY-4.0', 'talent release #12')")
    return value


class ActorCards:
    """Actor cards inside one asset database (`AssetDB` or a path to one)."""

    def __init__(self, db):
        self.db = db if isinstance(db, AssetDB) else AssetDB(db)
        self.conn = self.db.conn

    # --- actors ---------------------------------------------------------------------------------------------
    def create(self, name: str, character: str = "", notes: str = "") -> dict:
        name = (name or "").strip()
        if not name:
            raise ActorCardError("an actor needs a name")
        with self.conn:
            row = self.conn.execute("SELECT id FROM actors WHERE name = ?", (name,)).fetchone()
            if row is None:
                self.conn.execute("INSERT INTO actors (name, character, notes, created) VALUES (?, ?, ?, ?)",
                                  (name, character.strip(), notes, time.time()))
            elif character:
                self.conn.execute("UPDATE actors SET character = ? WHERE id = ?", (character.strip(), row[0]))
        return self.card(name)

    def _actor_id(self, name: str) -> int:
        row = self.conn.execute("SELECT id FROM actors WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise ActorCardError(f"no actor card named {name!r} (have: {', '.join(self.names()) or 'none'})")
        return row[0]

    def names(self) -> List[str]:
        return [r[0] for r in self.conn.execute("SELECT name FROM actors ORDER BY name")]

    # --- images ---------------------------------------------------------------------------------------------
    def add_image(self, actor: str, kind: str, path: str, licence: str, caption: str = "", view: str = "",
                  script_day: Optional[int] = None, source: str = "user", parent_id: Optional[int] = None,
                  recipe: Optional[dict] = None) -> dict:
        if kind not in IMAGE_KINDS:
            raise ActorCardError(f"image kind must be one of {IMAGE_KINDS}, not {kind!r}")
        if not os.path.isfile(path):
            raise ActorCardError(f"image file not found: {path}")
        if kind == "wardrobe" and script_day is None:
            raise ActorCardError("a wardrobe image belongs to a script day (script_day is required)")
        aid = self._actor_id(actor)
        with self.conn:
            cur = self.conn.execute(
                "INSERT INTO actor_images (actor_id, kind, view, script_day, path, sha256, caption, licence, source,"
                " parent_id, recipe_json, created) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (aid, kind, view, script_day, os.path.abspath(path), sha256_file(path), caption,
                 _licence(licence, f"{actor} {kind} image {os.path.basename(path)}"), source, parent_id,
                 json.dumps(recipe or {}), time.time()))
        return self.image(cur.lastrowid)

    def image(self, image_id: int) -> dict:
        row = self.conn.execute("SELECT * FROM actor_images WHERE id = ?", (image_id,)).fetchone()
        if row is None:
            raise ActorCardError(f"no actor image {image_id}")
        return dict(row, recipe=json.loads(row["recipe_json"]))

    def images(self, actor: str, kind: Optional[str] = None, script_day: Optional[int] = None) -> List[dict]:
        sql, args = "SELECT * FROM actor_images WHERE actor_id = ?", [self._actor_id(actor)]
        if kind is not None:
            sql, args = sql + " AND kind = ?", args + [kind]
        if script_day is not None:
            sql, args = sql + " AND script_day = ?", args + [script_day]
        return [dict(r, recipe=json.loads(r["recipe_json"])) for r in self.conn.execute(sql + " ORDER BY id", args)]

    def add_generated(self, actor: str, kind: str, path: str, parent_id: int, recipe: dict, view: str = "",
                      script_day: Optional[int] = None, caption: str = "") -> dict:
        """A turnaround/wardrobe image made from one of the card's images: it inherits the parent's licence
        plus the generator model's (recipe["model_licence"])."""
        parent = self.image(parent_id)
        licence = parent["licence"]
        if recipe.get("model_licence"):
            licence = f"{licence}; generated with {recipe.get('model', 'a model')} ({recipe['model_licence']})"
        return self.add_image(actor, kind, path, licence, caption=caption, view=view, script_day=script_day,
                              source="generated", parent_id=parent_id, recipe=recipe)

    # --- voice and LoRAs ------------------------------------------------------------------------------------
    def set_voice(self, actor: str, provider: str, voice_id: str, licence: str, settings: Optional[dict] = None,
                  seed: Optional[int] = None) -> dict:
        if not (voice_id or "").strip():
            raise ActorCardError("a voice needs the provider's voice id")
        aid = self._actor_id(actor)
        with self.conn:
            self.conn.execute("INSERT OR REPLACE INTO actor_voices VALUES (?,?,?,?,?,?)",
                              (aid, provider, voice_id.strip(), json.dumps(settings or {}), seed,
                               _licence(licence, f"{actor} voice {voice_id}")))
        return self.card(actor)["voice"]

    def add_lora(self, actor: str, base_model: str, path: str, fmt: str, rank: int, steps: int,
                 image_ids: List[int], trigger: str = "") -> dict:
        aid = self._actor_id(actor)
        for i in image_ids:
            if self.image(i)["actor_id"] != aid:
                raise ActorCardError(f"image {i} is not on {actor}'s card")
        with self.conn:
            cur = self.conn.execute("INSERT INTO actor_loras (actor_id, base_model, path, format, rank, steps, trigger,"
                                    " image_ids_json, created) VALUES (?,?,?,?,?,?,?,?,?)",
                                    (aid, base_model, os.path.abspath(path), fmt, int(rank), int(steps), trigger,
                                     json.dumps(list(image_ids)), time.time()))
        return next(lo for lo in self.card(actor)["loras"] if lo["id"] == cur.lastrowid)

    # --- the card -------------------------------------------------------------------------------------------
    def card(self, actor: str) -> dict:
        aid = self._actor_id(actor)
        row = dict(self.conn.execute("SELECT * FROM actors WHERE id = ?", (aid,)).fetchone())
        imgs = self.images(actor)
        by_id = {i["id"]: i for i in imgs}
        voice = self.conn.execute("SELECT * FROM actor_voices WHERE actor_id = ?", (aid,)).fetchone()
        loras = []
        for r in self.conn.execute("SELECT * FROM actor_loras WHERE actor_id = ? ORDER BY id", (aid,)):
            ids = json.loads(r["image_ids_json"])
            loras.append(dict(r, image_ids=ids,
                              licences=sorted({by_id[i]["licence"] for i in ids if i in by_id})))
        row.update(faces={k: [i for i in imgs if i["kind"] == k] for k in FACE_KINDS},
                   turnarounds=[i for i in imgs if i["kind"] == "turnaround"],
                   wardrobe={},
                   voice=None if voice is None else dict(voice, settings=json.loads(voice["settings_json"])),
                   loras=loras)
        for i in imgs:
            if i["kind"] == "wardrobe":
                row["wardrobe"].setdefault(i["script_day"], []).append(i)
        row["licences"] = self.licences(actor)
        return row

    def licences(self, actor: str) -> List[dict]:
        """Every input on the card with its licence: [{"what", "licence"}]."""
        aid = self._actor_id(actor)
        out = [{"what": f"image {r['id']} ({r['kind']}) {os.path.basename(r['path'])}", "licence": r["licence"]}
               for r in self.conn.execute("SELECT * FROM actor_images WHERE actor_id = ? ORDER BY id", (aid,))]
        voice = self.conn.execute("SELECT * FROM actor_voices WHERE actor_id = ?", (aid,)).fetchone()
        if voice is not None:
            out.append({"what": f"voice {voice['provider']}:{voice['voice_id']}", "licence": voice["licence"]})
        return out

    def script_days(self, actor: str) -> List[dict]:
        """The script days the actor's character appears on (from Script Lab's breakdown), each with its
        scenes, the wardrobe tags of those scenes and whether the card has a wardrobe image for that day."""
        character = self.card(actor)["character"] or actor
        if self.db.latest_revision() is None:
            return []
        scenes = {s["number"]: s for s in self.db.scenes()}
        cast = next((c for c in self.db.characters() if c["name"] == character or character in c["aliases"]), None)
        if cast is None:
            return []
        days: dict = {}
        for number in cast["scenes"]:
            s = scenes[number]
            day = days.setdefault(s["script_day"], {"script_day": s["script_day"], "scenes": [], "wardrobe": []})
            day["scenes"].append(number)
            for t in self.db.tags(scene_idx=s["idx"], category="wardrobe"):
                if t["label"] not in day["wardrobe"]:
                    day["wardrobe"].append(t["label"])
        have = {i["script_day"] for i in self.images(actor, kind="wardrobe")}
        out = sorted(days.values(), key=lambda d: (d["script_day"] is None, d["script_day"] or 0))
        for d in out:
            d["has_image"] = d["script_day"] in have
        return out


def generate_views(cards: ActorCards, actor: str, pipe, out_dir: str, *, views=("left_profile", "three_quarter"),
                   script_days: Optional[List[dict]] = None, steps: int = 30, seed: int = 0, megapixels: float = 1.0,
                   model: str = "Qwen-Image-Edit-2509", model_licence: str = "Apache-2.0") -> List[dict]:
    """Turnarounds (one per view) and wardrobe variations (one per script day, from that day's wardrobe tags)
    made from the card's front face reference with the pack's Qwen-Image-Edit, stored back on the card with
    their recipe and inherited licence."""
    from PIL import Image
    import numpy as np
    import torch
    from ..vfx import qwen_edit

    fronts = cards.images(actor, kind="face_front")
    if not fronts:
        raise ActorCardError(f"{actor}: add a face_front reference before generating turnarounds or wardrobe")
    ref = fronts[0]
    image = torch.from_numpy(np.asarray(Image.open(ref["path"]).convert("RGB"), dtype=np.float32) / 255.0)
    jobs = [("turnaround", v, None, TURNAROUND_VIEWS[v]) for v in views]
    for day in script_days or []:
        if day.get("wardrobe"):
            jobs.append(("wardrobe", "front", day["script_day"],
                         "Dress the same person in " + ", ".join(day["wardrobe"]) + "; keep the face, hair and pose."))
    os.makedirs(out_dir, exist_ok=True)
    made = []
    for n, (kind, view, day, instruction) in enumerate(jobs):
        result = qwen_edit.edit(pipe, [image], instruction, steps=steps, seed=seed + n, megapixels=megapixels)
        path = os.path.join(out_dir, f"{actor}_{kind}_{view}{'' if day is None else f'_day{day}'}.png")
        Image.fromarray((result[0].clamp(0, 1).numpy() * 255).round().astype("uint8")).save(path)
        recipe = {"model": model, "model_licence": model_licence, "instruction": instruction, "seed": seed + n,
                  "steps": steps, "megapixels": megapixels}
        made.append(cards.add_generated(actor, kind, path, ref["id"], recipe, view=view, script_day=day,
                                        caption=instruction))
    return made
