"""Attention masks for packed rows on the dense (CPU / reference) path.

A packed row holds several documents back to back. With isolation each token sees only the
earlier tokens of its own document, as if the document had been run alone; without it (the
original Open-Qwen2VL behaviour) every token sees everything before it in the row.

transformers 5.x passes a ready 4-D ``attention_mask`` straight to the attention function
(``masking_utils._preprocess_mask_arguments``). SDPA accepts a boolean mask (True = attend) but
the eager path *adds* the mask to the scores, so we build the additive float form, which both
backends read the same way.
"""

from __future__ import annotations

import torch


def document_causal_bool_mask(document_ids: torch.Tensor) -> torch.Tensor:
    """(B, 1, T, T) bool: query t may attend key s iff s <= t and both lie in the same document."""
    if document_ids.dim() != 2:
        raise ValueError(f"document_ids must be (batch, seq_len), got shape {tuple(document_ids.shape)}")
    length = document_ids.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=document_ids.device).tril()
    same_document = document_ids[:, :, None] == document_ids[:, None, :]
    return (causal[None] & same_document)[:, None]


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """0 where attention is allowed, the dtype's most negative value elsewhere (never -inf, so no NaN)."""
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)


def document_causal_mask(document_ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The additive (B, 1, T, T) mask for isolated documents, ready for Qwen2's ``attention_mask``."""
    return additive_mask(document_causal_bool_mask(document_ids), dtype)


def document_block_mask(document_ids: torch.Tensor) -> "torch.nn.attention.flex_attention.BlockMask":
    """FlexAttention's block-sparse form of the same mask: blocks that cross documents are skipped."""
    from torch.nn.attention.flex_attention import create_block_mask

    if document_ids.dim() != 2:
        raise ValueError(f"document_ids must be (batch, seq_len), got shape {tuple(document_ids.shape)}")
    batch, length = document_ids.shape

    def same_document_causal(b: torch.Tensor, h: torch.Tensor, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return (k <= q) & (document_ids[b, q] == document_ids[b, k])

    return create_block_mask(same_document_causal, batch, None, length, length, device=document_ids.device)
