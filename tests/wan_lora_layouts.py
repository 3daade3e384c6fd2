"""LoRA files in the layouts research models publish: PEFT on the original Wan names (what StoryMem's
`set_peft_model_state_dict` and ReCo's `inject_adapter_in_model` read), for tests."""
import torch


def peft_on_wan_names(model, rank: int, seed: int = 0, prefix: str = "", adapter: str = "",
                      roots=("blocks",), scale: float = 0.1) -> dict:
    """q/k/v/o of self and cross attention + ffn.0/ffn.2 of every block under each root (blocks, vace_blocks).
    StoryMem: prefix "base_model.model.", no adapter name; ReCo: no prefix, adapter ".default"."""
    g = torch.Generator().manual_seed(seed)
    dim = model.config.num_attention_heads * model.config.attention_head_dim
    ffn = model.config.ffn_dim
    shapes = [(f"{part}.{p}", dim, dim) for part in ("self_attn", "cross_attn") for p in "qkvo"]
    shapes += [("ffn.0", dim, ffn), ("ffn.2", ffn, dim)]
    sd = {}
    for root in roots:
        for i in range(len(getattr(model, root))):
            for name, n_in, n_out in shapes:
                key = f"{prefix}{root}.{i}.{name}"
                sd[f"{key}.lora_A{adapter}.weight"] = torch.randn(rank, n_in, generator=g) * scale
                sd[f"{key}.lora_B{adapter}.weight"] = torch.randn(n_out, rank, generator=g) * scale
    return sd
