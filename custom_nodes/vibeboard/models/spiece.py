"""UMT5 tokenizer from the SentencePiece model bytes a ComfyUI text-encoder file embeds (`spiece_model`).

Behaves like the `google/umt5-xxl` tokenizer for what Wan needs: SentencePiece ids, `</s>` (id 1) appended,
truncation keeping the `</s>`, padding with `<pad>` (id 0) to max_length, an attention mask. It answers the same
call the Wan text encoder makes on a transformers tokenizer, so either can sit on a Wan handle.
"""
from __future__ import annotations

from types import SimpleNamespace

import torch


class SentencePieceTokenizer:
    def __init__(self, model_proto: bytes):
        try:
            import sentencepiece
        except ImportError as exc:  # declared in requirements.txt; a clear message if an install lacks it
            raise ImportError("reading the tokenizer embedded in a text-encoder file needs `pip install "
                              "sentencepiece`") from exc
        self.sp = sentencepiece.SentencePieceProcessor(model_proto=model_proto)
        self.pad_token_id = max(self.sp.pad_id(), 0)
        self.eos_token_id = self.sp.eos_id() if self.sp.eos_id() >= 0 else 1

    def __len__(self):
        return self.sp.get_piece_size()

    def __call__(self, texts, padding="max_length", max_length: int = 512, truncation: bool = True,
                 add_special_tokens: bool = True, return_attention_mask: bool = True, return_tensors="pt"):
        if isinstance(texts, str):
            texts = [texts]
        rows = []
        for text in texts:
            ids = list(self.sp.encode(text))
            room = max_length - (1 if add_special_tokens else 0)
            if truncation:
                ids = ids[:room]
            if add_special_tokens:
                ids.append(self.eos_token_id)
            rows.append(ids)
        length = max_length if padding == "max_length" else max(len(r) for r in rows)
        input_ids = torch.full((len(rows), length), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, :len(r)] = 1
        return SimpleNamespace(input_ids=input_ids, attention_mask=mask)
