"""Train an actor LoRA on the pod: PEFT LoRA on a diffusers `WanTransformer3DModel` (Wan 2.1/2.2, T2V and I2V)
or `QwenImageTransformer2DModel` (Qwen-Image), flow-matching loss on cached latents (see `lora_dataset`).

What the anchors (ostris/ai-toolkit, kohya-ss/musubi-tuner, diffusion-pipe) taught, kept here:
- the frozen encoders run once (cache), the transformer trains with gradient checkpointing;
- checkpoints hold everything that decides the next step — LoRA weights, AdamW moments, the step, the noise
  generator's state — as safetensors (never pickles), so a resumed run continues *bit-exactly*;
- training opts out of the host's inference mode (ComfyUI runs every node under `torch.inference_mode()`):
  `add_lora` and `train` run under `common.grad.training_mode()`, and a base model built under inference mode
  gets normal tensors first (autograd refuses to save inference tensors for backward);
- the result is saved in the two layouts people load: ComfyUI/kohya (`lora_unet_<module>.lora_down/up.weight` +
  `.alpha`, Wan's original module names) and diffusers/PEFT (`transformer.<module>.lora_A/B.weight` +
  `adapter_config.json`); the pack's own loader (`models/lora.py`) reads both back.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from typing import Callable, List, Optional

import torch

from ..common import grad
from . import lora_dataset

WAN_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2"]
QWEN_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"]
CLIP_TOKENS = 257  # Wan I2V's CLIP-H image context length


class TrainerError(ValueError):
    pass


def _require_peft():
    try:
        import peft  # noqa: F401
    except ImportError as e:
        raise TrainerError("LoRA training needs the 'train' extra: pip install vibeboard[train] (peft)") from e


@dataclass
class TrainConfig:
    family: str = "wan"               # "wan" | "qwen-image"
    rank: int = 16
    alpha: float = 16.0
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    steps: int = 500
    batch_size: int = 1
    seed: int = 0
    resolution: int = 512
    gradient_checkpointing: bool = True
    save_every: int = 250             # checkpoint cadence (steps); the final step is always saved
    sample_every: int = 0             # call the sample hook every N steps (0 = never)
    timestep_shift: float = 3.0       # flow-matching sigma shift (Wan trains around 3–5)
    targets: List[str] = field(default_factory=list)

    def target_modules(self) -> List[str]:
        return self.targets or (WAN_TARGETS if self.family == "wan" else QWEN_TARGETS)


# ---- model plumbing ----------------------------------------------------------------------------------------
@grad.training_mode()
def add_lora(model: torch.nn.Module, cfg: TrainConfig) -> List[str]:
    """Freeze the base, add a PEFT adapter (diffusers' `add_adapter`), return the trainable parameter names.
    The LoRA parameters are made outside inference mode (made inside, they could never train), and base weights
    loaded under inference mode are replaced by normal copies (a no-op for a model built outside it)."""
    _require_peft()
    from peft import LoraConfig
    grad.normal_module(model)
    model.requires_grad_(False)
    model.add_adapter(LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, init_lora_weights=True,
                                 target_modules=cfg.target_modules()))
    if cfg.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    names = sorted(n for n, p in model.named_parameters() if "lora_" in n)
    for n, p in model.named_parameters():
        p.requires_grad_(n in set(names))
    # PEFT initialises lora_A with kaiming noise from the global RNG; redo it from our seed so a run is reproducible.
    gen = torch.Generator().manual_seed(cfg.seed)
    with torch.no_grad():
        params = dict(model.named_parameters())
        for n in names:
            if ".lora_A." in n:
                w = params[n]
                w.copy_((torch.rand(w.shape, generator=gen) * 2 - 1) * (1.0 / math.sqrt(w.shape[1])))
    return names


def _pack_qwen(latent: torch.Tensor) -> torch.Tensor:
    """[B,C,1,h,w] → [B, h/2·w/2, 4C] (QwenImagePipeline._pack_latents)."""
    b, c, _, h, w = latent.shape
    x = latent[:, :, 0].view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // 2) * (w // 2), c * 4)


def predict(model, family: str, noisy: torch.Tensor, sigma: torch.Tensor, embeds: torch.Tensor,
            mask: torch.Tensor) -> torch.Tensor:
    """The transformer's flow prediction for latents [B,C,1,h,w] (same shape back)."""
    if family == "wan":
        cfg = model.config
        x = noisy
        extra = cfg.in_channels - noisy.shape[1]
        kwargs = {}
        if extra > 0:
            # I2V: the 4-channel frame mask + the image-condition latents. Identity training uses an empty
            # condition (mask 0): the LoRA must learn the actor from the caption, not copy a first frame.
            x = torch.cat([noisy, noisy.new_zeros(noisy.shape[0], extra, *noisy.shape[2:])], 1)
        if getattr(cfg, "image_dim", None):
            kwargs["encoder_hidden_states_image"] = noisy.new_zeros(noisy.shape[0], CLIP_TOKENS, cfg.image_dim)
        return model(hidden_states=x, timestep=sigma * 1000.0, encoder_hidden_states=embeds, return_dict=False,
                     **kwargs)[0]
    if family == "qwen-image":
        b, c, _, h, w = noisy.shape
        out = model(hidden_states=_pack_qwen(noisy), encoder_hidden_states=embeds, encoder_hidden_states_mask=mask,
                    timestep=sigma, img_shapes=[[(1, h // 2, w // 2)]] * b, return_dict=False)[0]
        return out.view(b, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c, 1, h, w)
    raise TrainerError(f"unknown model family {family!r} (wan or qwen-image)")


def flow_loss(model, family: str, batch: dict, gen: torch.Generator, shift: float) -> torch.Tensor:
    """Rectified-flow loss: x_σ = (1−σ)·x0 + σ·ε, target ε − x0, σ from a shifted uniform draw."""
    x0 = batch["latent"]
    u = torch.rand(x0.shape[0], generator=gen)
    sigma = shift * u / (1 + (shift - 1) * u)
    noise = torch.randn(x0.shape, generator=gen)
    s = sigma.view(-1, *([1] * (x0.dim() - 1)))
    noisy = (1 - s) * x0 + s * noise
    pred = predict(model, family, noisy.to(x0.dtype), sigma, batch["embeds"], batch["mask"])
    return torch.nn.functional.mse_loss(pred.float(), (noise - x0).float())


def collate(items: List[dict], idx: List[int]) -> dict:
    lat = torch.stack([items[i]["latent"] for i in idx]).float()
    if lat.dim() == 4:  # image latents from a 2-D VAE → add the frame axis
        lat = lat[:, :, None]
    return {"latent": lat, "embeds": torch.stack([items[i]["embeds"] for i in idx]).float(),
            "mask": torch.stack([items[i]["mask"] for i in idx])}


# ---- checkpoints ---------------------------------------------------------------------------------------------
def _lora_state(model, names: List[str]) -> dict:
    params = dict(model.named_parameters())
    return {n: params[n].detach().clone() for n in names}


def save_checkpoint(path: str, model, names: List[str], opt: torch.optim.Optimizer, step: int,
                    gen: torch.Generator, losses: List[float], cfg: TrainConfig) -> str:
    from safetensors.torch import save_file
    tensors = {"lora." + n: t.contiguous() for n, t in _lora_state(model, names).items()}
    sd = opt.state_dict()
    for idx, state in sd["state"].items():
        for k, v in state.items():
            tensors[f"opt.{idx}.{k}"] = (v if torch.is_tensor(v) else torch.tensor(v)).contiguous()
    tensors["rng"] = gen.get_state()
    meta = {"step": str(step), "losses": json.dumps(losses), "config": json.dumps(asdict(cfg)),
            "param_groups": json.dumps(sd["param_groups"]), "format": "vibeboard-lora-train-1"}
    tmp = path + ".part"
    save_file(tensors, tmp, metadata=meta)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str, model, names: List[str], opt: torch.optim.Optimizer, gen: torch.Generator,
                    cfg: TrainConfig) -> tuple:
    from safetensors import safe_open
    with safe_open(path, "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    saved = json.loads(meta["config"])
    for key in ("family", "rank", "alpha", "learning_rate", "batch_size", "seed", "resolution", "timestep_shift"):
        if saved.get(key) != asdict(cfg).get(key):
            raise TrainerError(f"checkpoint {path} was trained with {key}={saved.get(key)!r}, this run has "
                               f"{asdict(cfg).get(key)!r}; resume with the same settings or start a new run")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for n in names:
            params[n].copy_(tensors["lora." + n])
    state: dict = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, idx, name = k.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
    gen.set_state(tensors["rng"])
    return int(meta["step"]), json.loads(meta["losses"])


# ---- export ----------------------------------------------------------------------------------------------------
def lora_weights(model, names: List[str]) -> dict:
    """{diffusers module name: {"down", "up"}} from the PEFT parameters (adapter name stripped)."""
    out: dict = {}
    for n, t in _lora_state(model, names).items():
        module, kind = n.split(".lora_")
        part = "down" if kind.startswith("A.") else "up"
        out.setdefault(module, {})[part] = t
    return out


def export(model, names: List[str], cfg: TrainConfig, out_dir: str, name: str, metadata: Optional[dict] = None
           ) -> dict:
    """Write `<name>.safetensors` (ComfyUI/kohya) and `<name>_diffusers/` (diffusers `pytorch_lora_weights` +
    PEFT `adapter_config.json`). Returns their paths."""
    from safetensors.torch import save_file
    from ..models import wan_keys
    os.makedirs(out_dir, exist_ok=True)
    weights = lora_weights(model, names)
    meta = {"ss_network_dim": str(cfg.rank), "ss_network_alpha": str(cfg.alpha), "ss_base_model": cfg.family,
            **{k: str(v) for k, v in (metadata or {}).items()}}
    kohya, diff = {}, {}
    for module, parts in sorted(weights.items()):
        original = wan_keys.diffusers_module_to_wan(module) if cfg.family == "wan" else module
        key = "lora_unet_" + original.replace(".", "_")
        kohya[key + ".lora_down.weight"] = parts["down"].to(torch.bfloat16)
        kohya[key + ".lora_up.weight"] = parts["up"].to(torch.bfloat16)
        kohya[key + ".alpha"] = torch.tensor(float(cfg.alpha))
        diff[f"transformer.{module}.lora_A.weight"] = parts["down"].to(torch.bfloat16)
        diff[f"transformer.{module}.lora_B.weight"] = parts["up"].to(torch.bfloat16)
    comfy = os.path.join(out_dir, name + ".safetensors")
    save_file({k: v.contiguous() for k, v in kohya.items()}, comfy, metadata=meta)
    folder = os.path.join(out_dir, name + "_diffusers")
    os.makedirs(folder, exist_ok=True)
    diffusers_file = os.path.join(folder, "pytorch_lora_weights.safetensors")
    save_file({k: v.contiguous() for k, v in diff.items()}, diffusers_file, metadata=meta)
    with open(os.path.join(folder, "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "LORA", "r": cfg.rank, "lora_alpha": cfg.alpha, "use_rslora": False,
                   "target_modules": cfg.target_modules(), "lora_dropout": 0.0, "bias": "none"}, f, indent=1)
    return {"comfyui": comfy, "diffusers": diffusers_file}


# ---- the loop ----------------------------------------------------------------------------------------------------
@torch.no_grad()
def eval_loss(model, cfg: TrainConfig, items: List[dict], seed: int = 1234) -> float:
    """Loss on every item with fixed noise and σ (a yardstick that does not move with the training RNG)."""
    gen = torch.Generator().manual_seed(seed)
    losses = [flow_loss(model, cfg.family, collate(items, [i]), gen, cfg.timestep_shift).item()
              for i in range(len(items))]
    return sum(losses) / len(losses)


@grad.training_mode()
def train(model, items: List[dict], cfg: TrainConfig, work_dir: str, *, resume: bool = True,
          stop_after: Optional[int] = None, on_step: Optional[Callable[[int, int, float], None]] = None,
          sample: Optional[Callable[[object, int], None]] = None, names: Optional[List[str]] = None) -> dict:
    """Train `model` (a LoRA is added unless `names` says it already has one) for cfg.steps. Checkpoints go to
    `work_dir/checkpoint.safetensors` every cfg.save_every steps; with `resume` an existing checkpoint is picked
    up. `stop_after` ends the call early (after a checkpoint) — what a pod shutdown does. Runs under
    `training_mode()` whatever the caller's mode (a node runs under inference mode). Returns
    {"step", "losses", "checkpoint", "names"}."""
    if not items:
        raise TrainerError("no training images (add face references or turnarounds to the actor card)")
    os.makedirs(work_dir, exist_ok=True)
    names = names or add_lora(model, cfg)
    grad.normal_module(model)  # `names` given: the caller added the LoRA; its base may still be inference tensors
    params = dict(model.named_parameters())
    opt = torch.optim.AdamW([params[n] for n in names], lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    ckpt = os.path.join(work_dir, "checkpoint.safetensors")
    step, losses = 0, []
    if resume and os.path.isfile(ckpt):
        step, losses = load_checkpoint(ckpt, model, names, opt, gen, cfg)
    model.train()
    epoch_batches: list = []
    while step < cfg.steps:
        if stop_after is not None and step >= stop_after:
            break
        # The batch order of epoch e depends only on (seed, e), so a resume lands on the same batch.
        per_epoch = max(1, math.ceil(len(items) / cfg.batch_size))
        epoch, within = divmod(step, per_epoch)
        if within == 0 or not epoch_batches:
            epoch_batches = lora_dataset.batches(items, cfg.batch_size,
                                                 torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch))
        batch = collate(items, epoch_batches[within % len(epoch_batches)])
        loss = flow_loss(model, cfg.family, batch, gen, cfg.timestep_shift)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        losses.append(float(loss.item()))
        if on_step is not None:
            on_step(step, cfg.steps, losses[-1])
        if sample is not None and cfg.sample_every and step % cfg.sample_every == 0:
            model.eval()
            with torch.no_grad():  # a preview render: no graph through the trainable LoRA
                sample(model, step)
            model.train()
        if step % cfg.save_every == 0 or step == cfg.steps or (stop_after is not None and step >= stop_after):
            save_checkpoint(ckpt, model, names, opt, step, gen, losses, cfg)
    model.eval()
    return {"step": step, "losses": losses, "checkpoint": ckpt, "names": names}
