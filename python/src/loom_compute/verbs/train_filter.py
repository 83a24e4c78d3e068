"""Verb `train-filter --shards TRUSTED... --out DIR [--steps N] [--batch-size N] [--lr X] [--seed N]`.

Trains a small CLIP contrastively on trusted pairs (a data filtering network, as in DFN) and saves
it as a transformers checkpoint that `score --model DIR` loads (docs/curation.md).
"""

from __future__ import annotations

import argparse
from typing import Any

from loom_compute.verbs.dispatch import Verb


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shards", required=True, nargs="+", metavar="DIR_OR_FILE", help="trusted shards: files, or directories of *.tar")
    parser.add_argument("--out", required=True, metavar="DIR", help="the checkpoint directory to create (must not exist or be empty)")
    parser.add_argument("--steps", type=int, default=600, metavar="N", help="optimizer steps (default 600)")
    parser.add_argument("--batch-size", type=int, default=128, metavar="N", help="pairs per contrastive batch (default 128)")
    parser.add_argument("--lr", type=float, default=5e-4, metavar="X", help="peak learning rate (default 5e-4; warm-up then cosine)")
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="seed of initialisation and batch order (default 0)")
    parser.add_argument("--tokenizer", default=None, metavar="TOKENIZER_JSON", help="tokenizer.json with <|endoftext|> (default: the bundled tiny tokenizer)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    # Imported here: the verb table must load without torch, so `doctor` can report a broken one.
    from loom_compute.curate.train_filter import FilterConfig, train_filter

    config = FilterConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    return train_filter(args.shards, args.out, config, tokenizer_path=args.tokenizer)


VERB = Verb(
    name="train-filter",
    help="train a small CLIP on trusted pairs (a DFN-style filter network) that `score --model DIR` loads",
    run=run,
    add_arguments=_add_arguments,
)
