"""Licence propagation: every asset records the models that made it and inherits the most restrictive licence.

Classes, least to most restrictive: open (commercial use fine) < attribution (credit / share-alike terms) <
restricted (own terms: acceptable-use rules, API terms, user thresholds — read them) < unknown (not stated)
< non-commercial. A commercial export stops on non-commercial assets and lists them.
"""
from __future__ import annotations

ORDER = ("open", "attribution", "restricted", "unknown", "non-commercial")

# model id (prefix before ':' in an asset's `models` list) → (licence text, class). From the model cards /
# repos named in docs/asset_bin.md; a model not listed falls back to the pack's registry.json text.
KNOWN = {
    "depth (given)": ("supplied by the user", "open"),
    "sam": ("Apache-2.0 (facebook/sam-vit-*)", "open"),
    "qwen-image-edit": ("Apache-2.0", "open"),
    "marigold-iid": ("see the prs-eth/marigold-iid-* model cards (not re-verified)", "unknown"),
    "mvinverse": ("Pi3 licence: non-commercial purposes only", "non-commercial"),
    "flux1-dev": ("FLUX.1 [dev] Non-Commercial License", "non-commercial"),
    "hunyuan3d": ("Tencent Hunyuan 3D Community License (territory and user limits)", "restricted"),
    "gemini": ("Google API terms of service", "restricted"),
    "nitrogen": ("NVIDIA License, non-commercial research only", "non-commercial"),
    "customx": ("CC BY-SA 4.0 (code); HunyuanCustom base: Tencent licence", "restricted"),
    "depth-lifted": ("VibeBoard (no model)", "open"),
}


def classify_text(text: str) -> str:
    t = (text or "").lower()
    if not t.strip() or "not stated" in t:
        return "unknown"
    if "non-commercial" in t or "noncommercial" in t or "-nc" in t or " nc " in t or "research only" in t:
        return "non-commercial"
    if any(w in t for w in ("community license", "acceptable use", "terms", "rail", "licence applies",
                            "license applies", "check")):
        return "restricted"
    if any(w in t for w in ("cc-by-sa", "cc by-sa", "cc-by", "cc by")):
        return "attribution"
    if any(w in t for w in ("apache", "mit", "bsd", "cc0", "public domain")):
        return "open"
    return "unknown"


def _registry_text(model_id: str) -> str | None:
    try:
        from ..models.registry import load_registry
        entry = load_registry().get("models", {}).get(model_id)
    except Exception:
        return None
    return None if entry is None else str(entry.get("license") or entry.get("licence") or "")


def licence_of(model: str) -> tuple:
    """(text, class) of one model entry like 'mvinverse:maddog241/mvinverse' or 'sam:/models/sam'."""
    base = model.split(":", 1)[0].strip().lower()
    if base in KNOWN:
        return KNOWN[base]
    text = _registry_text(base)
    if text is not None:
        return text, classify_text(text)
    return "not stated", "unknown"


def most_restrictive(models: list, parents: list = ()) -> tuple:
    """(class, [reasons]) over the models that made an asset and the classes of the assets it came from."""
    worst, reasons = "open", []
    for m in models:
        text, cls = licence_of(m)
        reasons.append(f"{m}: {text} [{cls}]")
        if ORDER.index(cls) > ORDER.index(worst):
            worst = cls
    for cls in parents:
        if ORDER.index(cls) > ORDER.index(worst):
            worst = cls
    return worst, reasons
