"""Verb `score --shards DIR_OR_FILES --out SCORES --scorer-name NAME --model SOURCE [--batch-size N]`.

Scores raw WebDataset shards with a CLIP or SigLIP checkpoint and writes one sidecar per shard,
`SCORES/{shard_stem}.{NAME}.parquet` (docs/curation.md). Shards already scored are skipped, so a
killed run is finished by running the same command again, with any number of ranks:

    python -m loom_compute score --shards data/ --out scores/ --scorer-name clip --model DIR
    torchrun --nproc-per-node 8 -m loom_compute score ...   # one process per GPU

`--kind mlm-filter --model runs/NAME/export` scores the four MLM-Filter metrics with a Loom export
instead (curate/mlm_filter.py): eight columns, `<metric>` and `<metric>_argmax`.
`--kind unifilter --model EXPORT` scores with an imported UniFilter classifier (`loom import --format
llava`; curate/unifilter.py): `quality_score` (softmax's positive class, as UniFilter's scoring
script), `quality_class` and `logit_<k>`.
"""

from __future__ import annotations

import argparse
from typing import Any

from loom_compute.errors import UsageError
from loom_compute.verbs.dispatch import Verb


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shards", required=True, nargs="+", metavar="DIR_OR_FILE", help="shard files, or directories whose *.tar files are scored")
    parser.add_argument("--out", required=True, metavar="SCORES", help="directory of the score sidecars ({shard_stem}.{scorer}.parquet)")
    parser.add_argument("--scorer-name", required=True, metavar="NAME", help="the sidecars' scorer name, ^[a-z][a-z0-9_-]*$ (e.g. clip, dfn); rules name NAME.cosine")
    parser.add_argument("--model", required=True, metavar="SOURCE", help="a transformers CLIP/SigLIP checkpoint: local directory or hub id (from the local cache); with --kind mlm-filter or unifilter a Loom export directory")
    parser.add_argument("--kind", choices=("clip", "mlm-filter", "unifilter"), default="clip", help="clip: a CLIP/SigLIP checkpoint, one cosine column; mlm-filter: a Loom export (runs/NAME/export) scored on the four MLM-Filter metrics; unifilter: an imported UniFilter classifier (loom import --format llava), columns quality_score, quality_class, logit_<k>")
    parser.add_argument("--batch-size", type=int, default=None, metavar="N", help="pairs per forward pass (default 64 for clip, 8 for mlm-filter, 16 for unifilter)")
    parser.add_argument("--answer-end", choices=("im_end", "non_digit"), default="im_end", help="mlm-filter: what ends a score answer: <|im_end|> (score-only answers) or any non-digit token (score then an explanation)")
    parser.add_argument("--decode-workers", type=int, default=None, metavar="N", help="image-decoding threads per process (default: its share of the CPUs less one, at most 8; 0 decodes in the prefetch thread)")
    parser.add_argument("--device", default=None, metavar="DEVICE", help="torch device (default: this rank's GPU when there is one, else cpu)")


def _device_for_rank(requested: str | None) -> str | None:
    if requested is not None:
        return requested
    import os

    import torch

    if not torch.cuda.is_available():
        return None
    local = int(os.environ.get("LOCAL_RANK", "0") or 0)
    index = local % torch.cuda.device_count()
    torch.cuda.set_device(index)
    return f"cuda:{index}"


def run(args: argparse.Namespace) -> dict[str, Any]:
    # Imported here: the verb table must load without torch, so `doctor` can report a broken one.
    from loom_compute.curate.clip_score import ClipScorer
    from loom_compute.curate.runner import run_scoring

    if args.batch_size is None:
        args.batch_size = {"mlm-filter": 8, "unifilter": 16}.get(args.kind, 64)
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {args.batch_size}")

    def make_scorer() -> Any:
        if args.kind == "mlm-filter":
            from loom_compute.curate.mlm_filter import MlmFilterScorer

            return MlmFilterScorer.from_export(args.model, device=_device_for_rank(args.device), batch_size=args.batch_size, answer_end=args.answer_end)
        if args.kind == "unifilter":
            from loom_compute.curate.unifilter import UniFilterScorer

            return UniFilterScorer.from_export(args.model, device=_device_for_rank(args.device), batch_size=args.batch_size)
        return ClipScorer(args.model, device=_device_for_rank(args.device), batch_size=args.batch_size)

    if args.decode_workers is not None and args.decode_workers < 0:
        raise UsageError(f"--decode-workers must be at least 0, got {args.decode_workers}")
    summary = run_scoring(args.shards, args.out, args.scorer_name, make_scorer, decode_workers=args.decode_workers)
    return {"model": args.model, "kind": args.kind, "batch_size": args.batch_size, **summary}


VERB = Verb(
    name="score",
    help="score raw shards with a CLIP/SigLIP checkpoint (or an MLM-Filter / UniFilter export): one sidecar per shard, resumable, any number of ranks",
    run=run,
    add_arguments=_add_arguments,
)
