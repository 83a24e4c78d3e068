"""Which checkpoints of a run are complete: the one rule, shared by the trainer and the loom CLI.

A checkpoint is ``RUN_DIR/checkpoints/step_{step:08d}/``. It is complete when that directory holds
``trainer.json``: the trainer writes everything into ``step_N.tmp/``, writes ``trainer.json`` last
and then renames the directory (train/checkpoint.py), so neither a ``.tmp`` directory nor one
without ``trainer.json`` counts. The CLI asks through the ``checkpoints`` verb.

No torch here: the verb must answer in the time it takes to start Python.
"""

from __future__ import annotations

import re
from pathlib import Path

CHECKPOINTS = "checkpoints"
TRAINER_STATE = "trainer.json"
_NAME = re.compile(r"^step_(\d{8})$")


def checkpoint_dir(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINTS / f"step_{step:08d}"


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, directory) of every complete checkpoint of a run, oldest first."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        match = _NAME.match(entry.name)
        if match and entry.is_dir() and (entry / TRAINER_STATE).is_file():
            found.append((int(match.group(1)), entry))
    return sorted(found)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None
