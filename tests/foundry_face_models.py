"""Tiny ONNX stand-ins for FlashPortrait's face models: they live in the pack (`foundry/tiny_release.py`, also
used by `vibeboard selftest`); this module keeps the tests' short import name."""
from vibeboard.foundry.tiny_release import (IN_H, IN_W, STRIDES, anchors, face_points, planted_outputs,  # noqa: F401
                                            write_face_det, write_face_landmark)
