"""Verb `read-packed --config FILE --packed DIR`: the trainer's loader reads a pack, end to end.

Checks every shard's header against the run (tokenizer hash, image tokens per image, seq_len,
stage, image size), reads one epoch of micro-batches exactly as training will, and reports what
it saw: the check that TypeScript's packed shards are what the compute plane expects.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from loom_compute import protocol
from loom_compute.config import load_run_config
from loom_compute.labels import IGNORE_INDEX
from loom_compute.verbs.dispatch import Verb


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--packed", required=True, metavar="DIR", help="output directory of `loom pack` (shards in w??????/)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    # Imported here: the verb table must load without torch, so `doctor` can report a broken one.
    from loom_compute.data import PackedLoader, packed_shard_paths
    from loom_compute.model.builder import read_tokenizer

    config = load_run_config(args.config)
    shards = packed_shard_paths(args.packed)
    loader = PackedLoader.for_run(config, read_tokenizer(config.tokenizer)[0], shards)
    batches = len(loader)
    sequences = real_tokens = images = targets = documents = 0
    target_counts = np.zeros(0, dtype=np.int64)
    for done, batch in enumerate(loader, start=1):
        sequences += int(batch["input_ids"].shape[0])
        real_tokens += int(batch["attention_mask"].sum())
        images += int(batch["pixel_values"].shape[0])
        labelled = batch["labels"][batch["labels"] != IGNORE_INDEX].numpy()
        targets += int(labelled.size)
        counts = np.bincount(labelled)
        if counts.size > target_counts.size:
            counts[: target_counts.size] += target_counts
            target_counts = counts
        else:
            target_counts[: counts.size] += counts
        documents += int(batch["cu_seqlens"].numel() - 1)
        protocol.progress(done, batches, unit="batches")
    seq_len = config.data.seq_len
    return {
        "shards": len(shards),
        "batches": batches,
        "sequences": sequences,
        "segments": documents,
        "images": images,
        "real_tokens": real_tokens,
        "fill": real_tokens / (sequences * seq_len) if sequences else 0.0,
        "label_tokens": targets,
        "label_unigram_entropy": unigram_entropy(target_counts),
    }


def unigram_entropy(counts: np.ndarray) -> float:
    """Entropy (nats) of the labelled tokens' frequencies: the loss of the best model that ignores
    context and image, the bar a trained model's loss must clear."""
    total = counts.sum()
    if total == 0:
        return 0.0
    p = counts[counts > 0] / total
    return float(-(p * np.log(p)).sum())


VERB = Verb(
    name="read-packed",
    help="read a pack with the training loader (checks headers against the run) and report what it holds",
    run=run,
    add_arguments=_add_arguments,
    config_required=True,
)
