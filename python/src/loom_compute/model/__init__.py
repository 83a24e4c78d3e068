"""The VLM (SigLIP -> projector -> Qwen2) and its attention masks for packed rows."""

from loom_compute.model.attention import additive_mask, document_causal_bool_mask, document_causal_mask
from loom_compute.labels import IGNORE_INDEX
from loom_compute.model.vlm import ImageTokenMismatchError, Projector, VisionLanguageModel

__all__ = [
    "IGNORE_INDEX",
    "ImageTokenMismatchError",
    "Projector",
    "VisionLanguageModel",
    "additive_mask",
    "document_causal_bool_mask",
    "document_causal_mask",
]
