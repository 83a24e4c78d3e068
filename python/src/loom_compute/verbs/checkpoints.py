"""Verb `checkpoints --run-dir DIR`: the complete checkpoints of a training run, oldest first.

The loom CLI asks this instead of repeating the rule (loom_compute.checkpoints). It imports no
torch, so it answers as fast as Python starts.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from loom_compute.checkpoints import list_checkpoints
from loom_compute.verbs.dispatch import Verb


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", required=True, metavar="DIR", help="the run directory (runs/<name>), which holds checkpoints/")


def run(args: argparse.Namespace) -> dict[str, Any]:
    run_dir = Path(args.run_dir).resolve()
    found = [{"step": step, "path": str(path)} for step, path in list_checkpoints(run_dir)]
    return {"run_dir": str(run_dir), "checkpoints": found, "latest": found[-1]["path"] if found else None}


VERB = Verb(
    name="checkpoints",
    help="list a run's complete checkpoints (step and path, oldest first) and the latest",
    run=run,
    add_arguments=_add_arguments,
)
