"""Breakdown categories: Final Draft's tag categories (their GUIDs are fixed across FDX files) plus our own.

The GUIDs are the ones Final Draft writes into `<TagData><TagCategories>`; keeping them means tags survive a
round trip through Final Draft / Movie Magic. Colours follow the common AD colour code and are only defaults.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Category:
    key: str          # our stable key (used in the DB, in LLM schemas, in CSV)
    name: str         # the name Final Draft shows
    guid: str         # the FDX TagCategory Id ("" for custom categories)
    number: int       # the FDX sort number
    color: str        # default colour (#RRGGBB), configurable


FDX_CATEGORIES = [
    Category("synopsis", "Synopsis", "8e5e75c2-713b-47df-a75f-f12648b98ded", 1, "#000000"),
    Category("cast", "Cast Members", "01fc9642-84ff-4366-b37c-a3068dee57e8", 2, "#FF0000"),
    Category("extras", "Background Actors", "028a4e2b-b507-4d09-88ab-90e3edae9071", 3, "#00AA00"),
    Category("stunts", "Stunts", "0377dbe6-77a3-41af-bda8-86eb2468fdbf", 4, "#FFA500"),
    Category("vehicles", "Vehicles", "04721a56-f54b-49c8-80ad-d53887d6b851", 5, "#FF69B4"),
    Category("props", "Props", "05c556eb-6bc1-4a3a-b09f-f8b5ba1b6afa", 6, "#800080"),
    Category("camera", "Camera", "47b02ff1-5161-4137-b736-f36eebba7643", 7, "#CCFF00"),
    Category("sfx", "Special Effects", "069e18b8-2109-4f3d-94e7-d802027a60a8", 8, "#1E90FF"),
    Category("wardrobe", "Wardrobe", "0726fa85-1e65-4ab8-87de-bf21d09b01f0", 9, "#00CED1"),
    Category("makeup", "Makeup/Hair", "08ae1eef-32ce-415f-9a9b-0982d2453ec4", 10, "#9370DB"),
    Category("animals", "Animals", "09cb0d1c-ce01-4f22-bb64-b5f2e6c491c6", 11, "#FF69B4"),
    Category("animal_wrangler", "Animal Wrangler", "0ae40617-cc7c-48e6-ae2b-5aaecc09986f", 12, "#8B4513"),
    Category("music", "Music", "0b0b44c9-aa4b-4c40-88b1-d94472ad7a26", 13, "#A52A2A"),
    Category("sound", "Sound", "0ce7d308-096d-4603-8fe8-349f72cd89ff", 15, "#8B4513"),
    Category("art", "Art Department", "c86eae40-3b01-41c3-a7de-6859e6ec971d", 16, "#BA55D3"),
    Category("set_dressing", "Set Dressing", "0debb71b-5743-4c53-80cc-e17e841ce645", 17, "#D2B48C"),
    Category("greenery", "Greenery", "0e7a8fc5-5441-4bad-a9bf-5ddd3fe51c69", 18, "#228B22"),
    Category("special_equipment", "Special Equipment", "0ff5cda4-4d43-4cfe-940f-91380c46fdad", 19, "#708090"),
    Category("security", "Security", "109d0eaa-0334-4823-ac0c-b44d3f209dc4", 20, "#2F4F4F"),
    Category("additional_labor", "Additional Labor", "1179a4b1-70ee-4011-b4a2-809a0af09e92", 21, "#696969"),
    Category("vfx", "Visual Effects", "12ab0932-e3b9-4b4a-bcd0-3da1b4e61d5e", 23, "#4169E1"),
    Category("mechanical_fx", "Mechanical Effects", "135cc9d1-c4d5-4d00-83d9-571f584ea9cd", 24, "#B8860B"),
    Category("misc", "Miscellaneous", "ce04f547-f7ee-40c9-ab66-d95a0c98034e", 25, "#808080"),
    Category("notes", "Notes", "15b6f4fd-4e74-4ad8-9971-b239d88c2997", 26, "#C0C0C0"),
    Category("script_day", "Script Day", "63c140da-ef2b-491a-b416-b46f461abb89", 27, "#000000"),
    Category("unit", "Unit", "849f1ebf-5507-4f33-bff6-3a5b4d73be14", 28, "#000000"),
    Category("sequence", "Sequence", "70877d87-30ef-45b6-be46-c6fa94b83a71", 29, "#000000"),
    Category("location", "Location", "c5e89e4d-f83e-4c28-950c-92a63f1b5f26", 30, "#000000"),
    Category("comments", "Comments", "216f33fd-fc42-4269-be01-b05b18f815a0", 31, "#000000"),
]

BY_KEY = {c.key: c for c in FDX_CATEGORIES}
BY_GUID = {c.guid: c for c in FDX_CATEGORIES}
BY_NAME = {c.name.lower(): c for c in FDX_CATEGORIES}


def register_custom(key: str, name: str, color: str = "#808080") -> Category:
    """A project-specific category (no FDX GUID; exported to FDX with a name-derived UUID)."""
    if key in BY_KEY:
        return BY_KEY[key]
    cat = Category(key, name, "", 100 + len([c for c in BY_KEY.values() if not c.guid]), color)
    BY_KEY[key] = cat
    BY_NAME[name.lower()] = cat
    return cat


def category(key: str) -> Category:
    if key not in BY_KEY:
        raise KeyError(f"unknown breakdown category {key!r}; known: {sorted(BY_KEY)}")
    return BY_KEY[key]
