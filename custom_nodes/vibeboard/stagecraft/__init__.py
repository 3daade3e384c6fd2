"""Stagecraft: blocking documents, previz, continuity checks, engine bridges (Unreal, NitroGen, CustomX)."""
