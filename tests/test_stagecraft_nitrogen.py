"""NitroGen: safe ng.pt reading, a tiny SigLIP tower from a local config, action decoding, and the
authenticated pickle-free server that refuses unauthenticated and non-loopback clients."""
import os
import socket
import struct

import numpy as np
import pytest
import torch

from vibeboard.stagecraft import nitrogen
from vibeboard.stagecraft.nitrogen_server import (NitroGenClient, NitroGenServer, ProtocolError, recv_message,
                                                  send_message)

TOKEN = "s3cret-token-of-enough-length"


def stub_policy(frame):
    """Deterministic stand-in for the network: actions from the frame's mean colour."""
    m = frame.reshape(-1, 3).mean(0) / 255.0
    buttons = np.zeros((8, 21))
    buttons[:, nitrogen.BUTTONS.index("SOUTH")] = m[0]
    buttons[:, nitrogen.BUTTONS.index("START")] = 1.0
    buttons[:, nitrogen.BUTTONS.index("RIGHT_TRIGGER")] = m[1]
    return {"j_left": np.tile([m[0] * 2 - 1, 0.5], (8, 1)), "j_right": np.zeros((8, 2)), "buttons": buttons}


def test_decoding_applies_thresholds_scales_axes_and_masks_menus():
    pred = stub_policy(np.full((4, 4, 3), [255, 128, 0], np.uint8))
    steps = nitrogen.decode_actions(pred)
    assert len(steps) == 8
    s = steps[0]
    assert s["AXIS_LEFTX"] == 32767 and s["AXIS_LEFTY"] == int(0.5 * 32767)
    assert s["SOUTH"] == 1 and s["START"] == 0 and s["RIGHT_TRIGGER"] == int(128 / 255 * 255)
    assert nitrogen.decode_actions(pred, allow_menu=True)[0]["START"] == 1
    events = nitrogen.to_engine_events(steps)
    assert {e["name"] for e in events} >= {"AXIS_LEFTX", "SOUTH", "RIGHT_TRIGGER"}
    assert all(e["t"] == 0 for e in events)  # a constant chunk: only the first step emits changes
    with pytest.raises(ValueError, match="shapes"):
        nitrogen.decode_actions({"j_left": [[0, 0]], "j_right": [[0, 0]], "buttons": [[0] * 20]})


def test_server_round_trip_and_refusals():
    frame = np.full((48, 64, 3), [255, 128, 0], np.uint8)
    with NitroGenServer(stub_policy, TOKEN) as server:
        port = server.server_address[1]
        client = NitroGenClient("127.0.0.1", port, TOKEN)
        pred = client.predict(frame)
        assert pred["buttons"].shape == (8, 21) and pred["j_left"][0, 0] == pytest.approx(1.0)
        client.close()
        with pytest.raises(ProtocolError, match="unauthorized"):
            NitroGenClient("127.0.0.1", port, "wrong-token-of-enough-len").predict(frame)
        # a pickle sent at the port is just a bad message, never loaded
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"\x80\x04\x95" + b"\x00" * 16)
            s.settimeout(5)
            try:
                reply, _ = recv_message(s)
                assert reply["status"] == "error"
            except (ProtocolError, OSError, struct.error):
                pass
        with socket.create_connection(("127.0.0.1", port)) as s:  # lying about the frame size
            send_message(s, {"token": TOKEN, "type": "predict", "shape": [10, 10, 3]}, b"\x00" * 5)
            assert "payload" in recv_message(s)[0]["message"]
        assert not server.verify_request(None, ("10.0.0.7", 5555))  # non-loopback peers refused
        assert server.verify_request(None, ("127.0.0.1", 5555))


def test_server_refuses_public_binding_and_weak_tokens():
    with pytest.raises(ValueError, match="loopback"):
        NitroGenServer(stub_policy, TOKEN, host="0.0.0.0")
    with pytest.raises(ValueError, match="token"):
        NitroGenServer(stub_policy, "short")


def test_malformed_reply_is_an_error_not_a_crash():
    def bad_policy(frame):
        return {"j_left": [[0, 0]], "j_right": [[0, 0]]}  # no buttons

    with NitroGenServer(bad_policy, TOKEN) as server:
        with pytest.raises(ProtocolError, match="malformed"):
            NitroGenClient("127.0.0.1", server.server_address[1], TOKEN).predict(np.zeros((8, 8, 3), np.uint8))


def write_tiny_ngpt(tmp_path, extra=None):
    from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(0)
    cfg = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                             image_size=32, patch_size=16)
    folder = tmp_path / "siglip"
    cfg.save_pretrained(str(folder))
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(str(folder))
    tower = SiglipVisionModel(cfg)
    state = {"vision_encoder." + k: v for k, v in getattr(tower, "vision_model", tower).state_dict().items()}
    state["model.proj_out.weight"] = torch.zeros(4, 4)  # stands for the action head's weights
    ckpt = {"ckpt_config": {"experiment_name": "tiny", "model_cfg": {
        "vision_encoder_name": "google/siglip-large-patch16-256", "hidden_size": 32, "action_horizon": 8}},
        "model": state}
    if extra is not None:
        ckpt["extra"] = extra
    torch.save(ckpt, str(tmp_path / "ng.pt"))
    return str(tmp_path / "ng.pt"), str(folder), tower


def test_tiny_checkpoint_loads_safely_and_encodes_frames_with_local_siglip(tmp_path):
    path, folder, tower = write_tiny_ngpt(tmp_path)
    config, state = nitrogen.read_checkpoint(path)
    assert config["model_cfg"]["action_horizon"] == 8
    vision, processor = nitrogen.load_vision_tower(folder, state)
    assert torch.equal(getattr(vision, "vision_model", vision).embeddings.patch_embedding.weight,
                       getattr(tower, "vision_model", tower).embeddings.patch_embedding.weight)
    feats = nitrogen.encode_frames(vision, processor, [np.zeros((90, 160, 3), np.uint8)])
    assert feats.shape == (1, 4, 32)  # (32/16)² patches


class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_checkpoint_with_pickled_objects_is_refused(tmp_path):
    path, _, _ = write_tiny_ngpt(tmp_path, extra=Payload())
    with pytest.raises(ValueError, match="refused"):
        nitrogen.read_checkpoint(path)
    torch.save({"model": {}}, str(tmp_path / "bad.pt"))
    with pytest.raises(ValueError, match="layout"):
        nitrogen.read_checkpoint(str(tmp_path / "bad.pt"))
