"""Converting between Loom exports (``model/export_dir.py``) and other tools' formats.

Export and import of the ecosystem's format:
- ``llava_hf``: export to / import from a llava-hf folder (``LlavaForConditionalGeneration``);
- ``hf_tokenizer``: AutoTokenizer folders and the ChatML chat template;
- ``hf_config``: transformers configs that 4.4x and 5.x read the same;

Importers of the published checkpoints, one module per source format: ``prismatic``
(Open-Qwen2VL's prismatic-vlms run folders) and ``llava`` (LLaVA-style folders: the MLM-Filter
and UniFilter scorers). Their shared pieces: ``files`` (reading weights without unpickling code),
``tokens`` (special tokens a source adds to its tokenizer), ``timm_siglip`` (timm ViT names ->
transformers SigLIP names), ``run_config`` (the base run config overridden with the source's
shapes and image settings), ``qwen2`` and ``export``.
"""

from loom_compute.convert.files import CheckpointError

__all__ = ["CheckpointError"]
