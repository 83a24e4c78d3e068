"""Importers of published checkpoints into the Loom-native export (``model/export_dir.py``).

One module per source format: ``prismatic`` (Open-Qwen2VL's prismatic-vlms run folders) and
``llava`` (LLaVA-style folders: the MLM-Filter and UniFilter scorers). Shared pieces: ``files``
(reading weights without unpickling code), ``tokens`` (special tokens a source adds to its
tokenizer), ``timm_siglip`` (timm ViT names -> transformers SigLIP names), ``run_config`` (the base
run config overridden with the source's shapes and image settings).
"""

from loom_compute.convert.files import CheckpointError

__all__ = ["CheckpointError"]
