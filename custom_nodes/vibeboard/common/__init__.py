"""Helpers shared by every VibeBoard studio module (no ComfyUI import at module import time)."""
