"""Media IO: load/save video (H.264 MP4) and audio with PyAV. See docs/video.md."""
