"""Shot Studio: StoryMem memory, Block Scene boxes + ReCo, Spatia-style location memory, keyframe montage."""
