"""The label that means "no target here", shared by the collator (data/packed.py) and the loss.

-100 is what ``torch.nn.functional.cross_entropy`` and transformers ignore by default; Loom masks
image tokens, padding, template text and each document's first token with it.
"""

IGNORE_INDEX = -100
