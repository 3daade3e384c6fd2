"""A torchvision-free stand-in for transformers' `Qwen2VLProcessor`, as Qwen-Image-Edit's pipeline uses it.

Why: in transformers 5 the Qwen2-VL *processor* cannot even be constructed without torchvision (its video
processor lives behind torchvision; `Qwen2VLProcessor(...)` fails in the class check of `video_processor`),
and torchvision has no build for some machines. The image half has a PIL/NumPy backend in transformers
(`Qwen2VLImageProcessorPil`, picked by `AutoImageProcessor(..., backend="pil")`), so we use that for
`pixel_values` / `image_grid_thw` (smart resize to multiples of patch·merge = 28 within min/max pixels,
rescale, CLIP mean/std from the checkpoint's `preprocessor_config.json`, temporal duplication, patchify to
[t·h·w, C·2·14·14]) and only re-do the text half here: every `<|image_pad|>` is expanded, in order, to
`grid_t·grid_h·grid_w / merge²` copies before tokenising, exactly what `Qwen2VLProcessor.__call__` does.

`QwenImageEditPlusPipeline._get_qwen_prompt_embeds` calls `processor(text=[...], images=[PIL...],
padding=True, return_tensors="pt").to(device)` and reads `input_ids`, `attention_mask`, `pixel_values`,
`image_grid_thw`; `mm_token_type_ids` (0 text, 1 image) is returned as the transformers processor does.
"""
from __future__ import annotations

import os

import torch

IMAGE_TOKEN = "<|image_pad|>"
_PLACEHOLDER = "<|vb_image_placeholder|>"  # keeps already-expanded tokens from being expanded again


def standard_processor_available() -> bool:
    """True when transformers' own Qwen2VLProcessor can be built here (torchvision importable)."""
    try:
        import torchvision  # noqa: F401
        from transformers.video_processing_utils import BaseVideoProcessor  # noqa: F401
    except Exception:  # a missing or broken (torch-mismatched) torchvision both land here
        return False
    return True


def expand_image_tokens(texts: list[str], grid_thw, merge_size: int, image_token: str = IMAGE_TOKEN) -> list[str]:
    """Replace the i-th image token (counted over all texts) by one token per merged vision patch."""
    counts = [int(t * h * w) // (merge_size ** 2) for t, h, w in torch.as_tensor(grid_thw).tolist()]
    index = 0
    out = []
    for text in texts:
        while image_token in text:
            if index >= len(counts):
                raise ValueError(f"more {image_token} tokens in the text than images ({len(counts)})")
            text = text.replace(image_token, _PLACEHOLDER * counts[index], 1)
            index += 1
        out.append(text.replace(_PLACEHOLDER, image_token))
    if index != len(counts):
        raise ValueError(f"{len(counts)} images but {index} {image_token} tokens in the text")
    return out


class QwenVLProcessor:
    """`processor(text=..., images=..., padding=True, return_tensors="pt")` → BatchFeature, like Qwen2VLProcessor."""

    def __init__(self, image_processor, tokenizer, image_token: str = IMAGE_TOKEN):
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.image_token = image_token
        self.image_token_id = tokenizer.convert_tokens_to_ids(image_token)

    @classmethod
    def from_folder(cls, processor_dir: str, tokenizer=None) -> "QwenVLProcessor":
        """From a checkpoint's `processor/` folder (preprocessor_config.json [+ tokenizer files])."""
        from transformers import AutoImageProcessor, AutoTokenizer

        if not os.path.isfile(os.path.join(processor_dir, "preprocessor_config.json")):
            raise FileNotFoundError(f"no preprocessor_config.json in {processor_dir}")
        image_processor = AutoImageProcessor.from_pretrained(processor_dir, backend="pil", local_files_only=True)
        has_tokenizer = any(os.path.isfile(os.path.join(processor_dir, f))
                            for f in ("tokenizer.json", "vocab.json", "tokenizer_config.json"))
        if has_tokenizer or tokenizer is None:
            tokenizer = AutoTokenizer.from_pretrained(processor_dir, local_files_only=True)
        return cls(image_processor, tokenizer)

    def __call__(self, text=None, images=None, padding=True, return_tensors="pt", **kwargs):
        from transformers import BatchFeature

        texts = [text] if isinstance(text, str) else list(text)
        image_inputs = {}
        if images is not None:
            image_inputs = dict(self.image_processor(images=images, return_tensors=return_tensors))
            texts = expand_image_tokens(texts, image_inputs["image_grid_thw"], self.image_processor.merge_size,
                                        self.image_token)
        text_inputs = dict(self.tokenizer(texts, padding=padding, return_tensors=return_tensors, **kwargs))
        ids = torch.as_tensor(text_inputs["input_ids"])
        text_inputs["mm_token_type_ids"] = (ids == self.image_token_id).to(torch.int32)
        return BatchFeature(data={**text_inputs, **image_inputs}, tensor_type=return_tensors)

    def batch_decode(self, *args, **kwargs):
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args, **kwargs):
        return self.tokenizer.decode(*args, **kwargs)
