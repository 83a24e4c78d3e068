"""Verb `train --config RUN_DIR/config.json [--resume] [--stop-after-steps N]`: pre-training or SFT.

Run it directly for one process, or under torchrun for many (`loom train` prints the command).
Everything it writes goes into the config's directory: metrics.jsonl, checkpoints/, export/,
loss.png, train.json (docs/training.md).
"""

from __future__ import annotations

import argparse
from typing import Any

from loom_compute.errors import UsageError
from loom_compute.verbs.dispatch import Verb


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from the newest complete checkpoint in RUN_DIR/checkpoints (start fresh when there is none)",
    )
    parser.add_argument(
        "--stop-after-steps",
        type=int,
        metavar="N",
        default=None,
        help="checkpoint and stop once N optimizer steps have run in total (a preemption drill; --resume continues)",
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    # Imported here: the verb table must load without torch, so `doctor` can report a broken one.
    from loom_compute.train.trainer import run_training

    if args.stop_after_steps is not None and args.stop_after_steps < 1:
        raise UsageError(f"--stop-after-steps must be at least 1, got {args.stop_after_steps}")
    return run_training(args.config, resume=args.resume, stop_after_steps=args.stop_after_steps)


VERB = Verb(
    name="train",
    help="train the model on packed shards (data.packed): pre-training or SFT, resumable, FSDP2 under torchrun",
    run=run,
    add_arguments=_add_arguments,
    config_required=True,
)
