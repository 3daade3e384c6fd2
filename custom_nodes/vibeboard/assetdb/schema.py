"""The asset database schema, as an ordered list of migrations (SQLite `PRAGMA user_version` = applied count).

Never edit a migration that has shipped: append a new one. Each runs in one transaction.
"""
from __future__ import annotations

MIGRATIONS = [
    # 1: scripts, revisions, scenes, breakdown tags, characters/locations/elements, aliases, shots
    """
    CREATE TABLE scripts (
        id INTEGER PRIMARY KEY, title TEXT NOT NULL UNIQUE, created REAL NOT NULL);
    CREATE TABLE revisions (
        id INTEGER PRIMARY KEY, script_id INTEGER NOT NULL REFERENCES scripts(id) ON DELETE CASCADE,
        number INTEGER NOT NULL, created REAL NOT NULL, source_path TEXT, source_format TEXT, parser TEXT,
        text TEXT NOT NULL, title_json TEXT NOT NULL DEFAULT '{}', page_count INTEGER NOT NULL DEFAULT 0,
        changes_json TEXT NOT NULL DEFAULT '{}', elements_json TEXT NOT NULL DEFAULT '[]',
        UNIQUE(script_id, number));
    CREATE TABLE scenes (
        id INTEGER PRIMARY KEY, revision_id INTEGER NOT NULL REFERENCES revisions(id) ON DELETE CASCADE,
        idx INTEGER NOT NULL, number TEXT NOT NULL, heading TEXT NOT NULL, int_ext TEXT, set_name TEXT,
        time_of_day TEXT, day_night TEXT, eighths INTEGER NOT NULL, page INTEGER NOT NULL,
        script_day INTEGER, synopsis TEXT, start INTEGER NOT NULL, "end" INTEGER NOT NULL,
        fingerprint TEXT NOT NULL, retagged INTEGER NOT NULL DEFAULT 1, UNIQUE(revision_id, idx));
    CREATE TABLE tags (
        id INTEGER PRIMARY KEY, revision_id INTEGER NOT NULL REFERENCES revisions(id) ON DELETE CASCADE,
        scene_id INTEGER NOT NULL REFERENCES scenes(id) ON DELETE CASCADE, category TEXT NOT NULL,
        label TEXT NOT NULL, start INTEGER NOT NULL, "end" INTEGER NOT NULL,
        source TEXT NOT NULL CHECK (source IN ('parser', 'llm', 'user')),
        status TEXT NOT NULL CHECK (status IN ('accepted', 'proposed', 'rejected')),
        implied INTEGER NOT NULL DEFAULT 0, note TEXT NOT NULL DEFAULT '', user_edited INTEGER NOT NULL DEFAULT 0,
        original_label TEXT NOT NULL DEFAULT '');
    CREATE INDEX tags_by_scene ON tags(scene_id);
    CREATE TABLE characters (
        id INTEGER PRIMARY KEY, script_id INTEGER NOT NULL REFERENCES scripts(id) ON DELETE CASCADE,
        name TEXT NOT NULL, alias_of INTEGER REFERENCES characters(id), UNIQUE(script_id, name));
    CREATE TABLE locations (
        id INTEGER PRIMARY KEY, script_id INTEGER NOT NULL REFERENCES scripts(id) ON DELETE CASCADE,
        name TEXT NOT NULL, UNIQUE(script_id, name));
    CREATE TABLE elements (
        id INTEGER PRIMARY KEY, script_id INTEGER NOT NULL REFERENCES scripts(id) ON DELETE CASCADE,
        category TEXT NOT NULL, label TEXT NOT NULL, UNIQUE(script_id, category, label));
    CREATE TABLE alias_proposals (
        id INTEGER PRIMARY KEY, revision_id INTEGER NOT NULL REFERENCES revisions(id) ON DELETE CASCADE,
        canonical TEXT NOT NULL, alias TEXT NOT NULL, reason TEXT NOT NULL, evidence_json TEXT NOT NULL,
        source TEXT NOT NULL DEFAULT 'parser', status TEXT NOT NULL DEFAULT 'proposed');
    CREATE TABLE shots (
        id INTEGER PRIMARY KEY, scene_id INTEGER NOT NULL REFERENCES scenes(id) ON DELETE CASCADE,
        number TEXT NOT NULL, description TEXT NOT NULL, workflow TEXT NOT NULL DEFAULT '',
        params_json TEXT NOT NULL DEFAULT '{}');
    """,
    # 2: LLM calls (token usage and cost per call) — what an LLM-assisted breakdown spent
    """
    CREATE TABLE llm_calls (
        id INTEGER PRIMARY KEY, created REAL NOT NULL, task TEXT NOT NULL, provider TEXT NOT NULL,
        model TEXT NOT NULL, input_tokens INTEGER NOT NULL DEFAULT 0, output_tokens INTEGER NOT NULL DEFAULT 0,
        cost_usd REAL NOT NULL DEFAULT 0, ok INTEGER NOT NULL, error TEXT NOT NULL DEFAULT '');
    """,
    # 3: Character Foundry actor cards — an actor is defined once (face refs, generated turnarounds and wardrobe
    # per script day, voice, trained LoRAs) and every input carries its licence.
    """
    CREATE TABLE actors (
        id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, character TEXT NOT NULL DEFAULT '',
        notes TEXT NOT NULL DEFAULT '', created REAL NOT NULL);
    CREATE TABLE actor_images (
        id INTEGER PRIMARY KEY, actor_id INTEGER NOT NULL REFERENCES actors(id) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ('face_front', 'face_three_quarter', 'face_profile', 'turnaround',
                                           'wardrobe', 'extra')),
        view TEXT NOT NULL DEFAULT '', script_day INTEGER, path TEXT NOT NULL, sha256 TEXT NOT NULL,
        caption TEXT NOT NULL DEFAULT '', licence TEXT NOT NULL, source TEXT NOT NULL DEFAULT 'user',
        parent_id INTEGER REFERENCES actor_images(id), recipe_json TEXT NOT NULL DEFAULT '{}', created REAL NOT NULL);
    CREATE TABLE actor_voices (
        actor_id INTEGER PRIMARY KEY REFERENCES actors(id) ON DELETE CASCADE, provider TEXT NOT NULL,
        voice_id TEXT NOT NULL, settings_json TEXT NOT NULL DEFAULT '{}', seed INTEGER, licence TEXT NOT NULL);
    CREATE TABLE actor_loras (
        id INTEGER PRIMARY KEY, actor_id INTEGER NOT NULL REFERENCES actors(id) ON DELETE CASCADE,
        base_model TEXT NOT NULL, path TEXT NOT NULL, format TEXT NOT NULL, rank INTEGER NOT NULL,
        steps INTEGER NOT NULL, trigger TEXT NOT NULL DEFAULT '', image_ids_json TEXT NOT NULL DEFAULT '[]',
        created REAL NOT NULL);
    """,
]
