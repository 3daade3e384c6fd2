"""Training-free regional prompts for Wan: masked cross-attention as a diffusers attention processor.

The text context becomes [global prompt | box 1 prompt | box 2 prompt ...] (each a full, padded prompt
embedding). In every cross-attention layer, a video token inside box k attends only to box k's prompt tokens
(and to the global prompt too when `include_global_in_boxes`); a token outside every box attends only to the
global prompt. So a box's prompt influences nothing outside its box. Calls whose context has another length
(the negative prompt of CFG) run the stock, unmasked attention.
"""
from __future__ import annotations

import contextlib
from typing import Optional, Sequence

import torch
import torch.nn.functional as F


class RegionalCrossAttnProcessor:
    def __init__(self, token_masks: torch.Tensor, segment_lengths: Sequence[int], include_global_in_boxes=False,
                 fallback=None):
        """token_masks [n_boxes, L_q] bool; segment_lengths [L_global, L_box1, ...]."""
        if token_masks.shape[0] != len(segment_lengths) - 1:
            raise ValueError("one token mask per box prompt is needed")
        self.token_masks = token_masks.bool()
        self.segment_lengths = list(segment_lengths)
        self.include_global = include_global_in_boxes
        self.fallback = fallback
        self._cache = {}

    def allow_mask(self, device) -> torch.Tensor:
        """[L_q, L_k] bool: which context tokens each video token may attend to."""
        key = str(device)
        if key not in self._cache:
            tm = self.token_masks.to(device)
            inside_any = tm.any(dim=0)
            cols = [(~inside_any | self.include_global).unsqueeze(1).expand(-1, self.segment_lengths[0])]
            for k, n in enumerate(self.segment_lengths[1:]):
                cols.append(tm[k].unsqueeze(1).expand(-1, n))
            self._cache[key] = torch.cat(cols, dim=1)
        return self._cache[key]

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None,
                 **kwargs):
        total = sum(self.segment_lengths)
        ctx = encoder_hidden_states
        img_ctx = None
        if ctx is not None and attn.add_k_proj is not None:  # Wan2.1 I2V: image tokens first, 512 text tokens
            img_len = ctx.shape[1] - total
            img_ctx, ctx = ctx[:, :img_len], ctx[:, img_len:]
        if ctx is None or ctx.shape[1] != total or hidden_states.shape[1] != self.token_masks.shape[1]:
            return self.fallback(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb, **kwargs)
        q = attn.norm_q(attn.to_q(hidden_states)).unflatten(2, (attn.heads, -1)).transpose(1, 2)
        k = attn.norm_k(attn.to_k(ctx)).unflatten(2, (attn.heads, -1)).transpose(1, 2)
        v = attn.to_v(ctx).unflatten(2, (attn.heads, -1)).transpose(1, 2)
        allow = self.allow_mask(q.device)[None, None]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=allow).transpose(1, 2).flatten(2).type_as(q)
        if img_ctx is not None:
            ki = attn.norm_added_k(attn.add_k_proj(img_ctx)).unflatten(2, (attn.heads, -1)).transpose(1, 2)
            vi = attn.add_v_proj(img_ctx).unflatten(2, (attn.heads, -1)).transpose(1, 2)
            out = out + F.scaled_dot_product_attention(q, ki, vi).transpose(1, 2).flatten(2).type_as(q)
        out = attn.to_out[0](out)
        return attn.to_out[1](out)


def regional_context(global_ctx: torch.Tensor, box_ctxs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list]:
    """Concatenate [global | box prompts] along the token axis; returns (context, segment lengths)."""
    parts = [global_ctx] + [c.to(global_ctx) for c in box_ctxs]
    return torch.cat(parts, dim=1), [p.shape[1] for p in parts]


@contextlib.contextmanager
def regional_attention(transformers, token_masks: torch.Tensor, segment_lengths: Sequence[int],
                       include_global_in_boxes: bool = False, blocks: Optional[Sequence[int]] = None):
    """Within the block, the cross-attention (attn2) of the given blocks (default all) is regional."""
    if isinstance(transformers, torch.nn.Module):
        transformers = [transformers]
    saved = []
    try:
        for t in transformers:
            if t is None:
                continue
            mods = [b.attn2 for b in t.blocks]
            mods += [b.attn2 for b in getattr(t, "vace_blocks", [])]
            for i, m in enumerate(mods):
                if blocks is not None and i not in blocks:
                    continue
                saved.append((m, m.processor))
                m.set_processor(RegionalCrossAttnProcessor(token_masks, segment_lengths, include_global_in_boxes,
                                                           fallback=m.processor))
        yield
    finally:
        for m, p in saved:
            m.set_processor(p)
