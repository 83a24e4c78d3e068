"""Converting between Loom exports (model/export_dir.py) and other tools' formats.

- ``llava_hf``: export to / import from a llava-hf folder (``LlavaForConditionalGeneration``);
- ``hf_tokenizer``: AutoTokenizer folders and the ChatML chat template;
- ``hf_config``: transformers configs that 4.4x and 5.x read the same;
- ``folder``: writing a whole output folder atomically.
"""
