"""Data text is plain text (DESIGN.md): captions, conversation values and benchmark questions are
tokenized as transformers does with ``split_special_tokens=True``, so a literal special-token
string in them is ordinary tokens, never its id; only templates add special ids.

For a ``tokenizers.Tokenizer`` that is the Rust switch ``encode_special_tokens = True`` (what
transformers sets). Added tokens marked ``"special": false`` (Qwen's ``<tool_call>``, ``<think>``)
are still matched: transformers treats them as ordinary vocabulary too. The TS data plane
(src/tokenize/tokenizer.ts, ``encodeText``) gives the same ids; both are checked against
transformers on vectors/tokenizer/plain_text.json.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tokenizers import Tokenizer


def plain_text_tokenizer(tokenizer: Tokenizer) -> Tokenizer:
    """A copy of the tokenizer for data text; the original keeps special strings as ids (templates)."""
    from tokenizers import Tokenizer

    # A copy, not a flag flip: the caller's tokenizer still encodes templates.
    plain = Tokenizer.from_str(tokenizer.to_str())
    plain.encode_special_tokens = True
    return plain


def encode_data_text(plain: Tokenizer, texts: list[str]) -> list[list[int]]:
    """Ids of each data text, with no special tokens added around it."""
    if not plain.encode_special_tokens:
        raise ValueError("encode_data_text needs the tokenizer from plain_text_tokenizer()")
    return [list(e.ids) for e in plain.encode_batch(texts, add_special_tokens=False)]
