"""NitroGen (MineDojo/NitroGen, NVIDIA, non-commercial): game pixels → gamepad action chunks. It takes no text.

Published checkpoint `ng.pt` (HF nvidia/NitroGen): a torch file `{"ckpt_config": {...}, "model": state_dict}`;
`ckpt_config.model_cfg.vision_encoder_name` names the SigLIP tower (google/siglip-large-patch16-256) whose
weights are inside the state dict under `vision_encoder.` (SigLIP's `vision_model.` module). Upstream reads it
with `torch.load(weights_only=False)`, asks for a game id with `input()`, moves to CUDA unconditionally and
fetches the SigLIP processor from the hub. Here:
- the file is read with `weights_only=True` (tensors and plain containers only; a checkpoint holding pickled
  objects is refused, never executed);
- SigLIP's config and image processor come from a local folder (no hub);
- the vision tower (SigLIP from transformers) is built and filled from the checkpoint here; the flow-matching
  DiT action head is the authors' code and comes from their package when installed (`load_policy`);
- frame pre-processing (256², area resampling), action decoding (axes ×32767, triggers ×255, buttons > 0.5,
  START/GUIDE/BACK blanked unless menus are allowed) and the mapping to engine input events are real.
"""
from __future__ import annotations

import os

import numpy as np
import torch

BUTTONS = ('BACK', 'DPAD_DOWN', 'DPAD_LEFT', 'DPAD_RIGHT', 'DPAD_UP', 'EAST', 'GUIDE', 'LEFT_SHOULDER',
           'LEFT_THUMB', 'LEFT_TRIGGER', 'NORTH', 'RIGHT_BOTTOM', 'RIGHT_LEFT', 'RIGHT_RIGHT', 'RIGHT_SHOULDER',
           'RIGHT_THUMB', 'RIGHT_TRIGGER', 'RIGHT_UP', 'SOUTH', 'START', 'WEST')  # the model's 21 outputs, in order
MENU_BUTTONS = ("START", "GUIDE", "BACK")
PRESS_THRESHOLD = 0.5
FRAME_SIZE = 256
ACTION_FPS = 60.0
AXES = ("AXIS_LEFTX", "AXIS_LEFTY", "AXIS_RIGHTX", "AXIS_RIGHTY")
LICENCE_TAG = "nitrogen"


def read_checkpoint(path: str) -> tuple:
    """(ckpt_config dict, state dict) of `ng.pt`, tensors and plain containers only."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: refused to unpickle ({type(exc).__name__}: it holds Python objects beyond "
                         "tensors and plain containers); re-save ckpt_config as a plain dict in a trusted "
                         "environment") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict) or not isinstance(
            ckpt.get("ckpt_config"), dict):
        raise ValueError(f"{path}: expected {{'ckpt_config': dict, 'model': state_dict}} (NitroGen ng.pt layout)")
    if "model_cfg" not in ckpt["ckpt_config"]:
        raise ValueError(f"{path}: ckpt_config has no model_cfg")
    return ckpt["ckpt_config"], ckpt["model"]


def load_vision_tower(siglip_folder: str, state: dict, dtype=torch.float32):
    """SigLIP vision tower (transformers) from a local config folder, weights from the checkpoint's
    `vision_encoder.*` keys. Returns (SiglipVisionModel, image processor)."""
    from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

    for name in ("config.json", "preprocessor_config.json"):
        if not os.path.isfile(os.path.join(siglip_folder, name)):
            raise FileNotFoundError(f"{siglip_folder}: missing {name} (SigLIP's config and processor files, "
                                    "e.g. from google/siglip-large-patch16-256; no weights needed)")
    config = SiglipVisionConfig.from_pretrained(siglip_folder)
    model = SiglipVisionModel(config)
    prefix = "vision_encoder."
    # upstream keeps `SiglipVisionModel(...).vision_model` as `vision_encoder`: load into that module
    sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not sub:
        raise ValueError("checkpoint has no vision_encoder.* weights")
    tower = getattr(model, "vision_model", model)  # transformers 5 flattened SiglipVisionModel
    missing, unexpected = tower.load_state_dict(sub, strict=False)
    if unexpected or [m for m in missing if not m.startswith("head.")]:
        raise ValueError(f"SigLIP config does not match the checkpoint: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    processor = SiglipImageProcessor.from_pretrained(siglip_folder)
    return model.to(dtype).eval(), processor


def preprocess(frame: np.ndarray) -> np.ndarray:
    """Game frame [H, W, 3] uint8 RGB → 256×256 (area resampling, as upstream's cv2.INTER_AREA)."""
    from PIL import Image

    arr = np.asarray(frame)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"a frame is [H, W, 3] RGB; got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = (np.clip(arr.astype(np.float32), 0, 1) * 255).round().astype(np.uint8)
    return np.asarray(Image.fromarray(arr).resize((FRAME_SIZE, FRAME_SIZE), Image.BOX))


@torch.no_grad()
def encode_frames(vision, processor, frames: list) -> torch.Tensor:
    """The model's image features (SigLIP last hidden state) of pre-processed frames."""
    pixels = processor([preprocess(f) for f in frames], return_tensors="pt")["pixel_values"]
    return vision(pixel_values=pixels.to(next(vision.parameters()).dtype)).last_hidden_state


def load_policy(ckpt_path: str, siglip_folder: str, device: str = "cpu"):
    """The full NitroGen policy: the authors' `nitrogen` package builds the network (its DiT action head is
    not re-implemented here); the SigLIP tower is pointed at the local folder so nothing is fetched."""
    config, state = read_checkpoint(ckpt_path)
    try:
        from nitrogen.flow_matching_transformer.nitrogen import NitroGen, NitroGen_Config
    except ImportError:
        raise ImportError("NitroGen's action head comes from the authors' package: pip install "
                          "git+https://github.com/MineDojo/NitroGen (NVIDIA non-commercial licence)") from None
    model_cfg = dict(config["model_cfg"], vision_encoder_name=siglip_folder)
    model = NitroGen(config=NitroGen_Config.model_validate(model_cfg))
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def validate_prediction(pred) -> dict:
    """A prediction {"j_left": [n, 2], "j_right": [n, 2], "buttons": [n, 21]} as float arrays, or ValueError."""
    if not isinstance(pred, dict):
        raise ValueError("prediction must be an object with j_left, j_right, buttons")
    try:
        out = {k: np.asarray(pred[k], dtype=np.float64) for k in ("j_left", "j_right", "buttons")}
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed prediction: {exc}") from None
    n = len(out["buttons"])
    if out["j_left"].shape != (n, 2) or out["j_right"].shape != (n, 2) or out["buttons"].shape != (n, len(BUTTONS)):
        raise ValueError(f"malformed prediction shapes: j_left {out['j_left'].shape}, j_right "
                         f"{out['j_right'].shape}, buttons {out['buttons'].shape} (need [n,2], [n,2], [n,21])")
    if not all(np.isfinite(v).all() for v in out.values()):
        raise ValueError("prediction contains NaN or infinity")
    return out


def decode_actions(pred, allow_menu: bool = False) -> list:
    """Per step: a gamepad state {AXIS_*: int ±32767, *_TRIGGER: 0..255, other buttons: 0/1}."""
    p = validate_prediction(pred)
    steps = []
    for i in range(len(p["buttons"])):
        (xl, yl), (xr, yr) = np.clip(p["j_left"][i], -1, 1), np.clip(p["j_right"][i], -1, 1)
        state = {"AXIS_LEFTX": int(xl * 32767), "AXIS_LEFTY": int(yl * 32767),
                 "AXIS_RIGHTX": int(xr * 32767), "AXIS_RIGHTY": int(yr * 32767)}
        for name, value in zip(BUTTONS, p["buttons"][i]):
            if "TRIGGER" in name:
                state[name] = int(np.clip(value, 0, 1) * 255)
            else:
                state[name] = 1 if value > PRESS_THRESHOLD else 0
        if not allow_menu:
            for name in MENU_BUTTONS:
                state[name] = 0
        steps.append(state)
    return steps


def to_engine_events(steps: list, fps: float = ACTION_FPS, start: float = 0.0) -> list:
    """Gamepad states → timed input events for an engine bridge: only changes are emitted
    ({"t", "kind": "axis" | "button" | "trigger", "name", "value"}), one step every 1/fps seconds."""
    events, last = [], {}
    for i, state in enumerate(steps):
        t = start + i / float(fps)
        for name, value in state.items():
            if last.get(name) == value:
                continue
            kind = "axis" if name in AXES else ("trigger" if "TRIGGER" in name else "button")
            if i == 0 and value == 0 and kind != "axis":
                continue  # everything starts released
            events.append({"t": round(t, 6), "kind": kind, "name": name, "value": value})
        last = dict(state)
    return events
