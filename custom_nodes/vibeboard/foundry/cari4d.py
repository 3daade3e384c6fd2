"""CARI4D (NVlabs/CARI4D): human (SMPL-H) + object 4D with contacts from a video — the contact-aware joint
optimisation stage, the body model it needs, and the CoCoNet checkpoint reader.

- Body model: SMPL-H as its users download it after registering (`smplh/<gender>/model.npz`: `v_template` [6890,3],
  `shapedirs` [6890,3,16], `posedirs` [6890,3,459], `J_regressor` [52,6890], `weights` [6890,52],
  `kintree_table` [2,52], `f`), read with `allow_pickle=False`; it cannot ship, so it is an input.
- Optimisation: per-frame body pose/translation and object rotation/translation start at the refined estimates
  (CoCoNet's output) and minimise  w_data·(distance to the estimates) + w_contact·(predicted-contact vertices to
  the object surface)² + w_smooth·(accelerations) — the object is pulled onto the hand that holds it, jitter is
  removed, and nothing moves where no contact was predicted.
- CoCoNet (`step031397.pth`, 194 M): read with `torch.load(weights_only=True)` into a tensor dict (the network
  itself — DINOv2 encoder + render-and-compare transformer — is not built here yet).
The result is a motion asset (npz + JSON summary) for Stagecraft.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np
import torch

from ..common import grad

SMPLH_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")
NUM_JOINTS = 52  # 22 body (incl. root) + 2×15 hand joints


class Cari4DError(ValueError):
    pass


@dataclass
class BodyModel:
    v_template: torch.Tensor   # [V,3]
    shapedirs: torch.Tensor    # [V,3,B]
    posedirs: torch.Tensor     # [V,3,(J-1)*9]
    J_regressor: torch.Tensor  # [J,V]
    weights: torch.Tensor      # [V,J]
    parents: list              # J ints, -1 for the root
    faces: np.ndarray

    @property
    def num_joints(self) -> int:
        return self.J_regressor.shape[0]


def load_body_model(path: str) -> BodyModel:
    """SMPL-H `model.npz` (numpy arrays only; a pickle inside is refused)."""
    try:
        data = np.load(path, allow_pickle=False)
    except ValueError as e:
        raise Cari4DError(f"{path}: not a plain .npz body model ({e}); convert the .pkl once with the SMPL-X "
                          "tools, or use the npz the MANO site provides") from e
    missing = [k for k in SMPLH_KEYS if k not in data.files]
    if missing:
        raise Cari4DError(f"{path}: body model lacks {missing} (expected SMPL-H's {SMPLH_KEYS})")
    t = {k: torch.from_numpy(np.asarray(data[k], dtype=np.float32)) for k in SMPLH_KEYS[:5]}
    kintree = np.asarray(data["kintree_table"]).astype(np.int64)
    parents = [int(p) if i else -1 for i, p in enumerate(kintree[0])]
    posedirs = t["posedirs"]
    if posedirs.dim() == 2:
        posedirs = posedirs.reshape(t["v_template"].shape[0], 3, -1)
    return BodyModel(t["v_template"], t["shapedirs"], posedirs, t["J_regressor"], t["weights"], parents,
                     np.asarray(data["f"]))


def axis_angle_to_matrix(aa: torch.Tensor) -> torch.Tensor:
    """[...,3] → [...,3,3] (Rodrigues; exact at zero)."""
    angle = aa.norm(dim=-1, keepdim=True).clamp(min=1e-8)
    axis = aa / angle
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*aa.shape[:-1], 3, 3)
    s, c = torch.sin(angle)[..., None], torch.cos(angle)[..., None]
    eye = torch.eye(3, dtype=aa.dtype).expand_as(k)
    return eye + s * k + (1 - c) * (k @ k)


def body_vertices(model: BodyModel, pose: torch.Tensor, betas: torch.Tensor, transl: torch.Tensor):
    """Linear blend skinning. pose [T, J, 3] axis-angle (root first), betas [B], transl [T,3] → (verts [T,V,3],
    joints [T,J,3])."""
    T, J = pose.shape[:2]
    v_shaped = model.v_template + torch.einsum("vcb,b->vc", model.shapedirs[..., :betas.shape[0]], betas)
    joints = model.J_regressor @ v_shaped                                    # [J,3]
    rot = axis_angle_to_matrix(pose)                                         # [T,J,3,3]
    pose_feat = (rot[:, 1:] - torch.eye(3)).reshape(T, -1)
    v_posed = v_shaped + torch.einsum("vcp,tp->tvc", model.posedirs, pose_feat)
    transforms = []
    for j in range(J):
        local = torch.zeros(T, 4, 4)
        local[:, :3, :3] = rot[:, j]
        offset = joints[j] - (joints[model.parents[j]] if model.parents[j] >= 0 else 0)
        local[:, :3, 3] = offset
        local[:, 3, 3] = 1
        transforms.append(local if model.parents[j] < 0 else transforms[model.parents[j]] @ local)
    G = torch.stack(transforms, 1)                                           # [T,J,4,4]
    posed_joints = G[:, :, :3, 3]
    rest = torch.cat([joints, torch.zeros(J, 1)], 1)[None, :, :, None]       # remove the rest-pose joint offset
    G = G - torch.cat([torch.zeros(T, J, 4, 3), G @ rest], 3)
    skin = torch.einsum("vj,tjab->tvab", model.weights, G)
    homo = torch.cat([v_posed, torch.ones(T, v_posed.shape[1], 1)], 2)[..., None]
    verts = (skin @ homo)[..., :3, 0]
    return verts + transl[:, None], posed_joints + transl[:, None]


@dataclass
class Track:
    """Per-frame estimates (e.g. CoCoNet's refined output)."""
    pose: torch.Tensor          # [T,J,3]
    betas: torch.Tensor         # [B]
    transl: torch.Tensor        # [T,3]
    obj_rot: torch.Tensor       # [T,3] axis-angle
    obj_transl: torch.Tensor    # [T,3]
    obj_points: torch.Tensor    # [P,3] object surface samples, object frame
    contacts: torch.Tensor      # [T,V] bool: body vertex in contact with the object


def object_points_world(track_rot, track_transl, points):
    return torch.einsum("tab,pb->tpa", axis_angle_to_matrix(track_rot), points) + track_transl[:, None]


def contact_distance(verts: torch.Tensor, obj: torch.Tensor, contacts: torch.Tensor) -> torch.Tensor:
    """Mean squared distance from each contact vertex to its nearest object point (0 when no contacts)."""
    if not bool(contacts.any()):
        return verts.new_zeros(())
    total, count = verts.new_zeros(()), 0
    for t in range(verts.shape[0]):
        v = verts[t][contacts[t]]
        if v.shape[0]:
            total = total + torch.cdist(v, obj[t]).min(dim=1).values.pow(2).sum()
            count += v.shape[0]
    return total / max(count, 1)


def _normal_fields(record):
    """A copy of a BodyModel / Track whose tensors autograd may use (inference tensors — loaded or made under a
    node's inference mode — cloned; normal ones shared)."""
    return dataclasses.replace(record, **{f.name: grad.normal_tensor(getattr(record, f.name))
                                          for f in dataclasses.fields(record)})


@grad.training_mode()
def optimise(model: BodyModel, track: Track, iters: int = 60, lr: float = 0.02, w_data: float = 1.0,
             w_contact: float = 100.0, w_smooth: float = 10.0) -> dict:
    """Contact-aware joint optimisation of body and object tracks. Returns the refined track and the losses.
    Opts out of the caller's inference mode (nodes run under it, as in ComfyUI): gradients are the method."""
    model, track = _normal_fields(model), _normal_fields(track)
    pose = track.pose.clone().requires_grad_(True)
    transl = track.transl.clone().requires_grad_(True)
    orot = track.obj_rot.clone().requires_grad_(True)
    otrans = track.obj_transl.clone().requires_grad_(True)
    opt = torch.optim.Adam([pose, transl, orot, otrans], lr=lr)
    history = []

    def accel(x):
        return (x[2:] - 2 * x[1:-1] + x[:-2]).pow(2).mean() if x.shape[0] > 2 else x.new_zeros(())

    for _ in range(iters):
        verts, joints = body_vertices(model, pose, track.betas, transl)
        obj = object_points_world(orot, otrans, track.obj_points)
        data = ((pose - track.pose).pow(2).mean() + (transl - track.transl).pow(2).mean()
                + (orot - track.obj_rot).pow(2).mean() + (otrans - track.obj_transl).pow(2).mean())
        contact = contact_distance(verts, obj, track.contacts)
        smooth = accel(joints) + accel(otrans)
        loss = w_data * data + w_contact * contact + w_smooth * smooth
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append({"loss": loss.item(), "contact": contact.item(), "smooth": smooth.item()})
    with torch.no_grad():
        verts, _ = body_vertices(model, pose, track.betas, transl)
        final_contact = float(contact_distance(verts, object_points_world(orot, otrans, track.obj_points),
                                               track.contacts))
    return {"pose": pose.detach(), "transl": transl.detach(), "obj_rot": orot.detach(), "obj_transl": otrans.detach(),
            "contact_rms_m": final_contact ** 0.5, "history": history}


def save_motion_asset(path: str, result: dict, track: Track, fps: float, object_name: str = "object") -> str:
    """npz (SMPL-H params + object poses + contacts) + `<path>.json` summary for Stagecraft's motion library."""
    arrays = {k: result[k].numpy() for k in ("pose", "transl", "obj_rot", "obj_transl")}
    arrays.update(betas=track.betas.numpy(), contacts=track.contacts.numpy())
    np.savez(path, **arrays)
    summary = {"kind": "human_object_motion", "body_model": "SMPL-H", "fps": fps, "frames": int(track.pose.shape[0]),
               "object": object_name, "contact_frames": int(track.contacts.any(dim=1).sum()),
               "contact_rms_m": result["contact_rms_m"], "source": "CARI4D contact-aware optimisation"}
    with open(os.path.splitext(path)[0] + ".json", "w") as f:
        json.dump(summary, f, indent=1)
    return path


def load_coconet(path: str) -> Dict[str, torch.Tensor]:
    """The CoCoNet checkpoint's tensors (nested `model`/`state_dict`/`ema` unwrapped), weights only."""
    from .flashportrait import FlashPortraitError, torch_tensors
    try:
        return torch_tensors(path)
    except FlashPortraitError as e:
        raise Cari4DError(str(e).replace("FlashPortrait", "CARI4D")) from None
