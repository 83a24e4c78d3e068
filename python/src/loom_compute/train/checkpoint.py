"""Resumable training checkpoints: ``runs/<name>/checkpoints/step_00000050/``.

What one holds (docs/training.md, "Checkpoints"):

- ``.metadata.json`` + ``__<rank>_0.distcp``: the model and AdamW moment tensors, saved by every
  rank with ``torch.distributed.checkpoint`` (each rank writes its own shards; loading reshards).
  The index is JSON (see dcp_json.py).
- ``trainer.json`` (rank 0): step, total steps, world size, the LR scheduler's state, the AdamW
  param groups (hyper-parameters, by parameter name), tokens and images seen.
- ``rank_00000.json`` ... (one per rank): that rank's data-loader position and RNG states.

Atomicity: everything is written into ``step_N.tmp/``; after a barrier rank 0 writes
``trainer.json`` last and renames the directory to ``step_N``. A directory without ``.tmp`` is
therefore complete; a ``.tmp`` left by a killed run is ignored and removed by the next save.
Only the newest ``train.keep_checkpoints`` are kept.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from loom_compute.atomic import write_json_atomic
from loom_compute.errors import LoomComputeError
from loom_compute.train.dcp_json import JsonMetadataReader, JsonMetadataWriter
from loom_compute.train.distributed import DistContext, barrier

FORMAT = "loom-train-checkpoint"
VERSION = 1
CHECKPOINTS = "checkpoints"
_NAME = re.compile(r"^step_(\d{8})$")


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINTS / f"step_{step:08d}"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        match = _NAME.match(entry.name)
        if match and entry.is_dir() and (entry / "trainer.json").is_file():
            found.append((int(match.group(1)), entry))
    return sorted(found)


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


# ---- RNG state as JSON ----------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    state = {"torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode("ascii")}
    if torch.cuda.is_available():
        state["cuda"] = base64.b64encode(torch.cuda.get_rng_state().numpy().tobytes()).decode("ascii")
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    def decode(text: str) -> torch.Tensor:
        return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)

    torch.set_rng_state(decode(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(decode(state["cuda"]))


# ---- optimizer state split: tensors through DCP, the rest as JSON ------------------------------


def _param_groups_to_json(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for group in groups:
        clean = {}
        for key, value in group.items():
            if isinstance(value, torch.Tensor):
                value = value.item()
            if isinstance(value, tuple):
                value = list(value)
            clean[key] = value
        out.append(clean)
    return out


def _param_groups_from_json(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: tuple(v) if k == "betas" else v for k, v in group.items()} for group in groups]


def _tensor_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict[str, Any], dict[str, Any]]:
    """(what DCP saves or fills: model + optimizer tensors, the optimizer's full state dict)."""
    model_sd, optim_sd = get_state_dict(model, optimizer)
    return {"model": model_sd, "optim_state": optim_sd["state"]}, optim_sd


# ---- save / load ------------------------------------------------------------------------------


def save_checkpoint(
    run_dir: Path,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    loader: Any,
    ctx: DistContext,
    keep: int,
    trainer_state: Mapping[str, Any],
) -> Path:
    """Writes checkpoint ``step`` (every rank calls this) and prunes old ones; returns its path."""
    final = checkpoint_dir(run_dir, step)
    tmp = final.with_name(final.name + ".tmp")
    if ctx.is_primary:
        for stale in (tmp, final):
            if stale.exists():
                shutil.rmtree(stale)
        tmp.mkdir(parents=True)
    barrier()
    tensors, optim_sd = _tensor_state(model, optimizer)
    dcp.save(tensors, storage_writer=JsonMetadataWriter(str(tmp)))
    write_json_atomic(tmp / f"rank_{ctx.rank:05d}.json", {"rank": ctx.rank, "loader": loader.state_dict(), "rng": rng_state()})
    barrier()
    if ctx.is_primary:
        write_json_atomic(
            tmp / "trainer.json",
            {
                "format": FORMAT,
                "version": VERSION,
                "step": step,
                "world_size": ctx.world_size,
                "scheduler": scheduler.state_dict(),
                "param_groups": _param_groups_to_json(optim_sd["param_groups"]),
                **trainer_state,
            },
        )
        os.replace(tmp, final)
        for old_step, old in list_checkpoints(run_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    barrier()
    return final


def load_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    loader: Any,
    ctx: DistContext,
) -> dict[str, Any]:
    """Restores everything ``save_checkpoint`` wrote into live objects; returns ``trainer.json``."""
    path = Path(path)
    try:
        trainer = json.loads((path / "trainer.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise LoomComputeError(f"{path / 'trainer.json'}: cannot read the checkpoint ({exc})") from None
    if trainer.get("format") != FORMAT or trainer.get("version") != VERSION:
        raise LoomComputeError(f"{path}: not a {FORMAT} v{VERSION} checkpoint")
    if int(trainer["world_size"]) != ctx.world_size:
        raise LoomComputeError(
            f"{path} was written by {trainer['world_size']} processes, this run has {ctx.world_size}: the data "
            "position is per process, so resume with the same number of processes",
            saved=trainer["world_size"],
            now=ctx.world_size,
        )
    rank_file = path / f"rank_{ctx.rank:05d}.json"
    try:
        mine = json.loads(rank_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise LoomComputeError(f"{rank_file}: cannot read ({exc})") from None

    tensors, optim_sd = _tensor_state(model, optimizer)
    dcp.load(tensors, storage_reader=JsonMetadataReader(str(path)))
    optim_sd = {"state": tensors["optim_state"], "param_groups": _param_groups_from_json(trainer["param_groups"])}
    set_state_dict(model, optimizer, model_state_dict=tensors["model"], optim_state_dict=optim_sd)
    scheduler.load_state_dict(trainer["scheduler"])
    loader.load_state_dict(mine["loader"])
    set_rng_state(mine["rng"])
    return trainer
