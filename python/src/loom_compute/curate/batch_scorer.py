"""Scoring a list of pairs with a batch scorer, one ``batch_size`` slice at a time (the MLM-Filter
and UniFilter scorers' in-memory ``score``; the runner feeds shards batch by batch itself)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def score_in_batches(scorer: Any, images: Sequence[Any], captions: Sequence[str]) -> dict[str, np.ndarray]:
    """``scorer.score_inputs(scorer.preprocess(...))`` per slice, the columns concatenated."""
    size = scorer.batch_size
    parts = [scorer.score_inputs(scorer.preprocess(images[k : k + size], captions[k : k + size])) for k in range(0, len(images), size)]
    return {c: np.concatenate([p[c] for p in parts]) if parts else np.zeros(0, np.float32) for c in scorer.columns}
