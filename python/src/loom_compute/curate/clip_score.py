"""Image-text cosine from any transformers CLIP or SigLIP checkpoint (local directory or hub id).

The model comes from `AutoModel.from_pretrained`; images go through the checkpoint's own image
processor (`AutoImageProcessor`: its size, crop, resample, mean and std) and captions through
its own tokenizer, so the scores are those the checkpoint's authors would get. SigLIP was
trained on text padded to its full length and pools the last position, so its captions are
padded to `max_length`; CLIP pools the end-of-text token, so padding to the batch's longest
caption gives the same embedding.

On CUDA the weights and images are bf16 (`dtype="auto"`); on CPU fp32. The cosine itself is
computed in fp32 from the re-normalised embeddings.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from loom_compute.errors import LoomComputeError

if TYPE_CHECKING:
    import torch
    from PIL import Image

COLUMN = "cosine"
SIGLIP_TYPES = ("siglip", "siglip2")
DTYPES = ("auto", "float32", "bfloat16")


class ClipScorer:
    """Scores (image, caption) pairs by the cosine of their embeddings; one `cosine` column."""

    columns = (COLUMN,)

    def __init__(self, source: str, *, device: str | None = None, batch_size: int = 64, dtype: str = "auto") -> None:
        import torch
        from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

        if batch_size < 1:
            raise LoomComputeError(f"--batch-size must be at least 1, got {batch_size}")
        self.source = source
        self.batch_size = batch_size
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        # Nothing downloads at run time: a hub id must already be in the local cache.
        try:
            self.model = AutoModel.from_pretrained(source, local_files_only=True)
            self.image_processor = AutoImageProcessor.from_pretrained(source, local_files_only=True)
            self.tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        except (OSError, ValueError) as exc:
            hint = "" if os.path.isdir(source) else f" (a hub id is read from the local cache only: download it first, e.g. `hf download {source}`)"
            raise LoomComputeError(f"cannot load a CLIP/SigLIP checkpoint with its image processor and tokenizer from {source}{hint}: {exc}") from exc
        if not (hasattr(self.model, "get_image_features") and hasattr(self.model, "get_text_features")):
            raise LoomComputeError(f"{source}: {type(self.model).__name__} is not a CLIP-style dual encoder (no image and text features)")
        # Inference weights in bf16 on a GPU (as scoring pipelines run CLIPs; autocast over fp32 weights
        # would re-cast every weight on every batch), fp32 on a CPU; the cosine is computed in fp32.
        if dtype not in DTYPES:
            raise LoomComputeError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        chosen = ("bfloat16" if self.device.type == "cuda" else "float32") if dtype == "auto" else dtype
        self.dtype = getattr(torch, chosen)
        self.model.eval().to(self.device, self.dtype)
        self.model_type = str(getattr(self.model.config, "model_type", ""))
        text_config = getattr(self.model.config, "text_config", None)
        self.max_text_length = int(getattr(text_config, "max_position_embeddings", 77))
        self.pad_to_max = self.model_type in SIGLIP_TYPES
        if self.tokenizer.pad_token is None:
            if self.pad_to_max or self.tokenizer.eos_token is None:
                raise LoomComputeError(f"{source}: the tokenizer has no pad token")
            self.tokenizer.pad_token = self.tokenizer.eos_token
        accepted = set(inspect.signature(self.model.forward).parameters)
        self._text_inputs = [name for name in ("input_ids", "attention_mask", "position_ids") if name in accepted]

    def preprocess(self, images: Sequence[Image.Image], captions: Sequence[str]) -> dict[str, torch.Tensor]:
        """The model inputs for one batch (CPU tensors): pixel_values and the caption tokens."""
        pixels = self.image_processor(images=list(images), return_tensors="pt")["pixel_values"]
        # Captions are data text (DESIGN.md): a "<|endoftext|>" written in one must not end it early
        # (CLIP pools at the first end-of-text id); the tokenizer's own template still adds its ids.
        text = self.tokenizer(
            list(captions),
            padding="max_length" if self.pad_to_max else "longest",
            truncation=True,
            max_length=self.max_text_length,
            return_tensors="pt",
            split_special_tokens=True,
        )
        inputs = {"pixel_values": pixels}
        inputs.update({name: text[name] for name in self._text_inputs if name in text})
        return inputs

    def score_inputs(self, inputs: dict[str, torch.Tensor]) -> np.ndarray:
        """Cosine per pair of one preprocessed batch, float32."""
        import torch

        with torch.inference_mode():
            moved = {name: tensor.to(self.device, non_blocking=True) for name, tensor in inputs.items()}
            moved["pixel_values"] = moved["pixel_values"].to(self.dtype)
            out = self.model(**moved, return_dict=True)
            image = out.image_embeds.float()
            text = out.text_embeds.float()
            image = image / image.norm(dim=-1, keepdim=True)
            text = text / text.norm(dim=-1, keepdim=True)
            cosine = (image * text).sum(dim=-1)
        return cosine.cpu().numpy().astype(np.float32)

    def score(self, images: Sequence[Image.Image], captions: Sequence[str]) -> dict[str, np.ndarray]:
        """Scores pairs in batches of `batch_size`; {"cosine": float32 array}."""
        if len(images) != len(captions):
            raise ValueError(f"{len(images)} images for {len(captions)} captions")
        parts = [
            self.score_inputs(self.preprocess(images[start : start + self.batch_size], captions[start : start + self.batch_size]))
            for start in range(0, len(images), self.batch_size)
        ]
        values = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
        return {COLUMN: values}
