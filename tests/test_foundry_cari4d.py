"""CARI4D's contact-aware optimisation with a synthetic body model of SMPL-H's tensor shapes (the real one needs
the user's own registration): the held object is pulled onto the contact vertices, nothing moves without
contacts, the npz body model loads without pickles, the motion asset is written."""
import json

import numpy as np
import pytest
import torch

from vibeboard.foundry import cari4d as C

V, J, B = 6890, 52, 16


def _synthetic_smplh(path):
    rng = np.random.default_rng(0)
    parents = np.concatenate([[-1], np.maximum(0, np.arange(1, J) - 1 - (np.arange(1, J) % 3 == 0))])
    w = rng.random((V, J)).astype(np.float32) ** 8
    np.savez(path, v_template=rng.normal(0, 0.3, (V, 3)).astype(np.float32),
             shapedirs=rng.normal(0, 1e-3, (V, 3, B)).astype(np.float32),
             posedirs=rng.normal(0, 1e-3, (V, 3, (J - 1) * 9)).astype(np.float32),
             J_regressor=(np.eye(J, V) + 1e-4).astype(np.float32) / (1 + 1e-4 * V),
             weights=w / w.sum(1, keepdims=True), kintree_table=np.stack([parents, np.arange(J)]).astype(np.int64),
             f=rng.integers(0, V, (13776, 3)).astype(np.int64))
    return str(path)


def _track(model, contact=True, frames=2):
    pose = torch.zeros(frames, J, 3)
    transl = torch.zeros(frames, 3)
    verts, _ = C.body_vertices(model, pose, torch.zeros(B), transl)
    hand = verts[:, :20].mean(1)                                       # where the "hand" is
    points = torch.randn(64, 3, generator=torch.Generator().manual_seed(0)) * 0.02
    contacts = torch.zeros(frames, V, dtype=torch.bool)
    contacts[:, :20] = contact
    return C.Track(pose, torch.zeros(B), transl, torch.zeros(frames, 3), hand + torch.tensor([0.08, 0.0, 0.0]),
                   points, contacts)


def test_body_model_loads_from_npz_and_rest_pose_is_the_template(tmp_path):
    model = C.load_body_model(_synthetic_smplh(tmp_path / "model.npz"))
    assert model.num_joints == J and model.posedirs.shape == (V, 3, 459)
    verts, joints = C.body_vertices(model, torch.zeros(1, J, 3), torch.zeros(B), torch.zeros(1, 3))
    assert torch.allclose(verts[0], model.v_template, atol=1e-5)
    np.savez(tmp_path / "bad.npz", v_template=np.zeros((3, 3)))
    with pytest.raises(C.Cari4DError, match="lacks"):
        C.load_body_model(str(tmp_path / "bad.npz"))


def test_contact_pulls_the_object_onto_the_hand_and_no_contact_leaves_it(tmp_path):
    model = C.load_body_model(_synthetic_smplh(tmp_path / "model.npz"))
    track = _track(model)
    verts, _ = C.body_vertices(model, track.pose, track.betas, track.transl)
    before = float(C.contact_distance(verts, C.object_points_world(track.obj_rot, track.obj_transl,
                                                                   track.obj_points), track.contacts)) ** 0.5
    out = C.optimise(model, track, iters=12, lr=0.05)
    assert out["contact_rms_m"] < before * 0.5
    free = _track(model, contact=False)
    out_free = C.optimise(model, free, iters=3)
    assert torch.allclose(out_free["obj_transl"], free.obj_transl, atol=1e-4)
    path = C.save_motion_asset(str(tmp_path / "take.npz"), out, track, fps=30.0, object_name="mug")
    summary = json.load(open(tmp_path / "take.json"))
    assert summary["frames"] == 2 and summary["contact_frames"] == 2 and np.load(path)["pose"].shape == (2, J, 3)


def test_coconet_checkpoint_reads_weights_only(tmp_path):
    torch.save({"model": {"encoder.w": torch.ones(2)}, "step": 31397}, tmp_path / "step031397.pth")
    assert list(C.load_coconet(str(tmp_path / "step031397.pth"))) == ["encoder.w"]


def test_optimise_node_through_the_executor_pulls_the_object_onto_the_hand(tmp_path):
    # Nodes run under torch.inference_mode() (as in ComfyUI): the body model and tracks the node loads are inference
    # tensors and Adam needs autograd — the optimisation opts out, or it fails before its first step.
    from vibeboard_runner.executor import Executor
    from vibeboard_runner.registry import NodeRegistry
    (tmp_path / "models" / "smplh").mkdir(parents=True)
    model = C.load_body_model(_synthetic_smplh(tmp_path / "models" / "smplh" / "model.npz"))
    track = _track(model)
    verts, _ = C.body_vertices(model, track.pose, track.betas, track.transl)
    before = float(C.contact_distance(verts, C.object_points_world(track.obj_rot, track.obj_transl,
                                                                   track.obj_points), track.contacts)) ** 0.5
    (tmp_path / "out").mkdir()
    np.savez(tmp_path / "out" / "tracks.npz", **{k: getattr(track, k).numpy() for k in
                                                ("pose", "betas", "transl", "obj_rot", "obj_transl", "obj_points",
                                                 "contacts")})
    ex = Executor(NodeRegistry.default(), output_dir=tmp_path / "out", input_dir=tmp_path / "in",
                  temp_dir=tmp_path / "t", models_dir=str(tmp_path / "models"))
    result = ex.execute({"1": {"class_type": "VBCari4DContactOptimise", "inputs": {
        "body_model": "smplh/model.npz", "tracks": "tracks.npz", "fps": 30.0, "iterations": 12,
        "contact_weight": 100.0, "smooth_weight": 10.0, "filename_prefix": "motion/take"}}})
    assert result.status == "success", result.error
    (summary,) = (tmp_path / "out" / "motion").glob("take*.json")
    assert json.loads(summary.read_text())["contact_rms_m"] < before * 0.5
