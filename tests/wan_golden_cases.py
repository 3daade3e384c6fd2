"""Every Wan-based node run once on tiny random models with fixed seeds: the golden-output cases.

`tests/test_wan_runtime_golden.py` compares each case's output with `tests/data/wan_golden.safetensors`.
Re-record deliberately (and say why in the commit) with:  VB_RECORD_GOLDEN=1 python3 -m pytest -q
tests/test_wan_runtime_golden.py
"""
from __future__ import annotations

import os
import shutil

import numpy as np
import torch

FRAMES, SIZE = 5, 32


def build_models(root: str) -> dict:
    from vibeboard.models import tiny
    from vibeboard.vfx.infcam import InfCamWan, infcam_to_diffsynth_state
    from safetensors.torch import save_file

    paths = tiny.write_comfy_layout(root, kinds=("t2v", "i2v", "vace"))
    paths["ti2v"] = tiny.write_diffusers_layout(os.path.join(root, "diffusers", "Wan2.2-TI2V-5B-Diffusers"), "ti2v")
    dm = os.path.join(root, "diffusion_models")
    paths["i2v_low"] = os.path.join(dm, "wan2.2_i2v_low_noise_14B_fp16.safetensors")
    tiny.save_comfy_transformer(tiny.build_transformer("i2v", seed=5), paths["i2v_low"])
    from vibeboard.models.loaders import load_wan_transformer
    paths["lora"] = os.path.join(root, "loras", "tiny_wan_lora.safetensors")
    tiny.write_lora(paths["lora"], load_wan_transformer(paths["t2v"], "fp32"), "kohya", alpha=4.0)
    model = InfCamWan(tiny.build_transformer("t2v", seed=1)).init_from_base()
    os.makedirs(os.path.join(root, "infcam"), exist_ok=True)
    state = {k: v.clone().contiguous() for k, v in infcam_to_diffsynth_state(model).items()}
    g = torch.Generator().manual_seed(3)
    for k in state:  # the additions start at zero in a fresh model: give them values so they matter
        if any(s in k for s in ("cam_encoder", "zero_conv")):
            state[k] = torch.randn(state[k].shape, generator=g) * 0.05
    paths["infcam"] = os.path.join(root, "infcam", "infcam_step35000.safetensors")
    save_file(state, paths["infcam"])
    extras = {k: v for k, v in state.items()
              if any(s in k for s in (".self_attn_pre.", "modulation0", "cam_encoder", "zero_conv"))}
    paths["infcam_extras"] = os.path.join(root, "infcam", "infcam_additions_only.safetensors")
    save_file(extras, paths["infcam_extras"])
    return paths


def _img(seed: int, n: int = 1, size: int = SIZE) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).random((n, size, size, 3)).astype(np.float32))


class Ctx:
    def __init__(self, paths: dict):
        from vibeboard.wan.handle import load_wan
        p = paths
        self.paths = p
        tok = p["tokenizer"]
        self.t2v = load_wan(p["t2v"], p["vae"], p["umt5"], tok, dtype="fp32")
        self.i2v = load_wan(p["i2v"], p["vae"], p["umt5"], tok, p["clip_vision"], dtype="fp32")
        self.a14b = load_wan(p["i2v"], p["vae"], p["umt5"], tok, p["clip_vision"], p["i2v_low"], dtype="fp32")
        self.vace = load_wan(p["vace"], p["vae"], p["umt5"], tok, dtype="fp32")
        self.ti2v = load_wan(p["ti2v"], p["ti2v"], p["ti2v"], None, dtype="fp32")

    def text(self, wan, prompt="a red cat walks in the city", negative="blurry"):
        from vibeboard.wan.nodes import VBWanTextEncode
        return VBWanTextEncode().encode(wan, prompt, negative)[0]


def sampler(steps=2, cfg=4.0, shift=5.0, scheduler="unipc", seed=7, **kw):
    from vibeboard.wan.nodes import VBWanSamplerSettings
    return VBWanSamplerSettings().make(steps, cfg, shift, scheduler, seed, **kw)[0]


def _wan_nodes():
    from vibeboard.wan import nodes
    return nodes


def _shots():
    from vibeboard.shots import nodes
    return nodes.NODE_CLASS_MAPPINGS


def _bank(n=2):
    from vibeboard.shots.memory_bank import MemoryEntry, StoryMemoryBank
    bank = StoryMemoryBank()
    for i in range(n):
        bank.add(MemoryEntry(image=(_img(20 + i)[0] * 255).round().to(torch.uint8), shot=i, frame=0), dedup=False)
    return bank


def _path():
    from vibeboard.camera import CameraPath, intrinsics_from_fov
    c2w = np.repeat(np.eye(4)[None], FRAMES, 0)
    for i in range(FRAMES):
        a = 0.05 * i
        c2w[i, :3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
        c2w[i, 0, 3] = 0.02 * i
    return CameraPath(c2w, intrinsics_from_fov(SIZE, SIZE, 60.0), SIZE, SIZE)


SZ = dict(width=SIZE, height=SIZE, length=FRAMES)


# ---- cases: name -> fn(ctx) -> tensor ------------------------------------------------------------
def t2v_unipc(c):
    n = _wan_nodes()
    return n.VBWanT2V().generate(c.t2v, c.text(c.t2v), sampler=sampler(), **SZ)[0]["samples"]


def t2v_euler_unbatched(c):
    n = _wan_nodes()
    s = sampler(scheduler="euler", cfg=3.0, seed=11)
    s.batch_cfg = False
    return n.VBWanT2V().generate(c.t2v, c.text(c.t2v), sampler=s, **SZ)[0]["samples"]


def t2v_dpm_lora(c):
    n = _wan_nodes()
    wan = n.VBWanLoRA().apply(c.t2v, "tiny_wan_lora.safetensors", 0.8)[0]
    return n.VBWanT2V().generate(wan, c.text(wan), sampler=sampler(scheduler="dpm++"), **SZ)[0]["samples"]


def i2v_first_last(c):
    n = _wan_nodes()
    return n.VBWanI2V().generate(c.i2v, c.text(c.i2v), _img(1), end_image=_img(2), sampler=sampler(),
                                 **SZ)[0]["samples"]


def i2v_a14b_low_noise_cfg(c):
    n = _wan_nodes()
    return n.VBWanI2V().generate(c.a14b, c.text(c.a14b), _img(1), sampler=sampler(steps=3, cfg_low_noise=2.0),
                                 **SZ)[0]["samples"]


def ti2v_first_frame(c):
    n = _wan_nodes()
    return n.VBWanI2V().generate(c.ti2v, c.text(c.ti2v), _img(1), sampler=sampler(), **SZ)[0]["samples"]


def vace_control_refs(c):
    n = _wan_nodes()
    mask = torch.zeros(FRAMES, SIZE, SIZE)
    mask[:, 8:24, 8:24] = 1
    return n.VBWanVACE().generate(c.vace, c.text(c.vace), strength=1.0, control_video=_img(3, FRAMES),
                                  control_masks=mask, reference_images=_img(4), sampler=sampler(), **SZ)[0]["samples"]


def v2v(c):
    n = _wan_nodes()
    init = n.VBWanVAEEncode().encode(c.t2v, _img(5, FRAMES))[0]
    return n.VBWanV2V().generate(c.t2v, c.text(c.t2v), init, 0.6, sampler=sampler(steps=3))[0]["samples"]


def storymem_fixed(c):
    N = _shots()
    return N["VBStoryMemShot"]().generate(c.i2v, c.text(c.i2v), _bank(), sampler=sampler(), first_frame=_img(6),
                                          rope_gap=5, memory_mode="fixed", **SZ)[0]["samples"]


def storymem_defaults(c):
    N = _shots()
    return N["VBStoryMemShot"]().generate(c.i2v, c.text(c.i2v), _bank(), first_frame=_img(6), **SZ)[0]["samples"]


def storymem_renoise_motion(c):
    N = _shots()
    return N["VBStoryMemShot"]().generate(c.i2v, c.text(c.i2v), _bank(), sampler=sampler(), motion_frames=_img(7, 5),
                                          rope_gap=5, memory_mode="renoise", **SZ)[0]["samples"]


def storymem_free_a14b(c):
    N = _shots()
    return N["VBStoryMemShot"]().generate(c.a14b, c.text(c.a14b), _bank(), sampler=sampler(steps=3, cfg_low_noise=2.0),
                                          rope_gap=0, memory_mode="free", **SZ)[0]["samples"]


def _boxes():
    from vibeboard.shots import boxes
    return boxes.parse_boxes([{"label": "a", "prompt": "a knight", "box": [0.0, 0.0, 0.5, 0.5]},
                              {"label": "b", "prompt": "", "box": [0.5, 0.5, 1.0, 1.0]}])


def boxes_vace_regional(c):
    N = _shots()
    return N["VBBoxRegionGenerate"]().generate(c.vace, c.text(c.vace), _boxes(), _img(8, 3), sampler=sampler(),
                                               **SZ)[0]["samples"]


def boxes_t2v_plain(c):
    N = _shots()
    return N["VBBoxRegionGenerate"]().generate(c.t2v, c.text(c.t2v), _boxes(), _img(8, 3), sampler=sampler(),
                                               regional_prompts=False, **SZ)[0]["samples"]


def reco_edit(c):
    N = _shots()
    return N["VBReCoEdit"]().edit(c.vace, c.text(c.vace, "Replace the cat with a fox."), _img(9, FRAMES),
                                  sampler=sampler(), **SZ)[0]["samples"]


def reco_ref_edit(c):
    N = _shots()
    return N["VBReCoEdit"]().edit(c.vace, c.text(c.vace, "Add the mug to the table."), _img(9, FRAMES),
                                  sampler=sampler(), reference_image=_img(13), **SZ)[0]["samples"]


def montage(c):
    N = _shots()
    return N["VBKeyframeMontage"]().generate(c.vace, c.text(c.vace), _img(10, 2), "0, 4", sampler=sampler(),
                                             **SZ)[0]["samples"]


def _vfx():
    from vibeboard.vfx import nodes
    return nodes


def _infcam_sampler(batch_cfg=False):
    # InfCam's own loop: Euler on DiffSynth's sigmas, prompt and negative in two forwards (the golden's recording)
    return sampler(steps=2, cfg=4.0, shift=5.0, scheduler="flow_euler", seed=7, batch_cfg=batch_cfg)


def infcam_with_wan(c, batch_cfg=False):
    from vibeboard.vfx.infcam_conditioning import DEFAULT_NEGATIVE
    v = _vfx()
    h = v.VBInfCamLoader().load("infcam/infcam_additions_only.safetensors", "-", "-", "-", "fp32", "cpu", wan=c.t2v,
                                attention_head_dim=16)[0]
    text = c.text(h, "a dog  runs", DEFAULT_NEGATIVE)
    return v.VBChangeCamera().run(h, text, _img(12, FRAMES), _path(), 1.2, sampler=_infcam_sampler(batch_cfg))[0]


def infcam_standalone(c):
    v = _vfx()
    h = v.VBInfCamLoader().load("infcam/infcam_step35000.safetensors", "vae/wan_2.1_vae.safetensors",
                                "text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors",
                                "text_encoders/umt5-xxl-tokenizer", "fp32", "cpu", attention_head_dim=16)[0]
    text = c.text(h, "a dog runs", "blurry")
    return v.VBChangeCamera().run(h, text, _img(12, FRAMES), _path(), 1.0, sampler=_infcam_sampler(True))[0]


CASES = {f.__name__: f for f in (t2v_unipc, t2v_euler_unbatched, t2v_dpm_lora, i2v_first_last,
                                   i2v_a14b_low_noise_cfg, ti2v_first_frame, vace_control_refs, v2v, storymem_fixed,
                                   storymem_defaults, storymem_renoise_motion, storymem_free_a14b, boxes_vace_regional, boxes_t2v_plain,
                                   reco_edit, reco_ref_edit, montage, infcam_with_wan, infcam_standalone)}
