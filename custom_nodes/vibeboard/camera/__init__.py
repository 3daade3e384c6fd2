"""Shared camera module: VB_CAMERA_PATH (OpenCV camera-to-world poses + pixel intrinsics), presets,
2D-drawn paths, keyframes and interchange formats. Used by the VFX suite and Shot Studio."""
from .path import CameraPath, intrinsics_from_fov, parse_camera_path  # noqa: F401
from .presets import EASINGS, PRESETS, path_from_2d, path_from_keyframes, preset_path, shake_path  # noqa: F401
