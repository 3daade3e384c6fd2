"""Shot Studio nodes (category VibeBoard/Shots): StoryMem memory, Block Scene boxes + ReCo, location memory,
keyframe montage. The node classes live in three files by theme; this module only gathers their mappings."""
from .nodes_blocking import NODE_CLASS_MAPPINGS as _BLOCKING, NODE_DISPLAY_NAME_MAPPINGS as _BLOCKING_NAMES
from .nodes_location import NODE_CLASS_MAPPINGS as _LOCATION, NODE_DISPLAY_NAME_MAPPINGS as _LOCATION_NAMES
from .nodes_story import NODE_CLASS_MAPPINGS as _STORY, NODE_DISPLAY_NAME_MAPPINGS as _STORY_NAMES

NODE_CLASS_MAPPINGS = {**_STORY, **_BLOCKING, **_LOCATION}
NODE_DISPLAY_NAME_MAPPINGS = {**_STORY_NAMES, **_BLOCKING_NAMES, **_LOCATION_NAMES}
