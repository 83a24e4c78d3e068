"""Resumable training checkpoints: ``runs/<name>/checkpoints/step_00000050/``.

The trainer hands its parts over as ``Stateful`` objects (``state_dict`` / ``load_state_dict``, the
torchtitan way); ``Checkpointer`` decides only where each part's state goes:

- ``.metadata.json`` + ``__<rank>_0.distcp``: the model and AdamW moment tensors (``ModelState``,
  ``OptimizerState``), saved by every rank with ``torch.distributed.checkpoint`` (each rank writes
  its own shards; loading reshards). The index is JSON (see dcp_json.py), so nothing is pickled.
- ``trainer.json`` (rank 0): format, world size, the LR scheduler's state, the AdamW param groups
  (hyper-parameters, by parameter name) and ``TrainProgress`` (step, total steps, tokens and
  images seen, stage).
- ``rank_00000.json`` ... (one per rank): that rank's data-loader position and RNG states.

Atomicity: everything is written into ``step_N.tmp/``; after a barrier rank 0 writes
``trainer.json`` last and renames the directory to ``step_N``. Which directories count as complete
is decided in one place, loom_compute.checkpoints. A ``.tmp`` left by a killed run is ignored and
removed by the next save. Only the newest ``train.keep_checkpoints`` are kept.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.checkpoint.stateful import Stateful

from loom_compute.atomic import write_json_atomic
from loom_compute.checkpoints import TRAINER_STATE, checkpoint_dir, list_checkpoints
from loom_compute.errors import LoomComputeError
from loom_compute.train.dcp_json import JsonMetadataReader, JsonMetadataWriter
from loom_compute.train.distributed import DistContext, barrier

FORMAT = "loom-train-checkpoint"
VERSION = 1
SEEN_COUNTERS = ("tokens", "label_tokens", "images", "sequences")


# ---- the parts, as Stateful objects ---------------------------------------------------------------


class ModelState(Stateful):
    """The model's (sharded) tensors, by parameter name."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def state_dict(self) -> dict[str, Any]:
        return get_model_state_dict(self.model)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        set_model_state_dict(self.model, state_dict)


class OptimizerState(Stateful):
    """AdamW's moment tensors (``state``) and its hyper-parameters (``param_groups``, JSON-ready)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.model = model
        self.optimizer = optimizer

    def state_dict(self) -> dict[str, Any]:
        full = get_optimizer_state_dict(self.model, self.optimizer)
        return {"state": full["state"], "param_groups": _param_groups_to_json(full["param_groups"])}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        full = {"state": state_dict["state"], "param_groups": _param_groups_from_json(state_dict["param_groups"])}
        set_optimizer_state_dict(self.model, self.optimizer, full)


class RngState(Stateful):
    """This process's torch (and CUDA) generator states, base64 in JSON."""

    def state_dict(self) -> dict[str, Any]:
        state = {"torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode("ascii")}
        if torch.cuda.is_available():
            state["cuda"] = base64.b64encode(torch.cuda.get_rng_state().numpy().tobytes()).decode("ascii")
        return state

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        def decode(text: str) -> torch.Tensor:
            return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)

        torch.set_rng_state(decode(state_dict["torch"]))
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state(decode(state_dict["cuda"]))


@dataclass
class TrainProgress(Stateful):
    """Optimizer steps taken and what they consumed, summed over all ranks."""

    total_steps: int  # this run's plan; a checkpoint's own value is kept in saved_total_steps
    stage: str
    step: int = 0
    seen: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SEEN_COUNTERS, 0))
    saved_total_steps: int | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "total_steps": self.total_steps, "seen": dict(self.seen), "config_stage": self.stage}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        self.step = int(state_dict["step"])
        self.seen = {k: int(state_dict.get("seen", {}).get(k, 0)) for k in SEEN_COUNTERS}
        self.saved_total_steps = int(state_dict.get("total_steps", self.total_steps))


@dataclass
class TrainingParts:
    """Everything a checkpoint saves and restores."""

    model: ModelState  # DCP, key "model"
    optimizer: OptimizerState  # tensors: DCP, key "optim_state"; param groups: trainer.json
    scheduler: Stateful  # trainer.json "scheduler" (an LR scheduler is Stateful as it is)
    progress: TrainProgress  # trainer.json, top level
    loader: Stateful  # rank_R.json "loader" (PackedLoader)
    rng: RngState = field(default_factory=RngState)  # rank_R.json "rng"


# ---- save / load ------------------------------------------------------------------------------


class Checkpointer:
    def __init__(self, run_dir: Path, parts: TrainingParts, ctx: DistContext, keep: int) -> None:
        self.run_dir = Path(run_dir)
        self.parts = parts
        self.ctx = ctx
        self.keep = keep

    def save(self) -> Path:
        """Writes the checkpoint of the current step (every rank calls this) and prunes old ones."""
        parts, ctx = self.parts, self.ctx
        final = checkpoint_dir(self.run_dir, parts.progress.step)
        tmp = final.with_name(final.name + ".tmp")
        if ctx.is_primary:
            for stale in (tmp, final):
                if stale.exists():
                    shutil.rmtree(stale)
            tmp.mkdir(parents=True)
        barrier()
        model_sd = parts.model.state_dict()
        optim_sd = parts.optimizer.state_dict()
        dcp.save({"model": model_sd, "optim_state": optim_sd["state"]}, storage_writer=JsonMetadataWriter(str(tmp)))
        write_json_atomic(
            tmp / f"rank_{ctx.rank:05d}.json",
            {"rank": ctx.rank, "loader": parts.loader.state_dict(), "rng": parts.rng.state_dict()},
        )
        barrier()
        if ctx.is_primary:
            progress = parts.progress.state_dict()
            write_json_atomic(
                tmp / TRAINER_STATE,
                {
                    "format": FORMAT,
                    "version": VERSION,
                    "step": progress.pop("step"),
                    "world_size": ctx.world_size,
                    "scheduler": parts.scheduler.state_dict(),
                    "param_groups": optim_sd["param_groups"],
                    **progress,
                },
            )
            os.replace(tmp, final)
            for _, old in list_checkpoints(self.run_dir)[: -self.keep]:
                shutil.rmtree(old, ignore_errors=True)
        barrier()
        return final

    def load(self, path: Path) -> None:
        """Restores every part from the checkpoint at ``path``."""
        path, parts, ctx = Path(path), self.parts, self.ctx
        trainer = _read_json(path / TRAINER_STATE, "cannot read the checkpoint")
        if trainer.get("format") != FORMAT or trainer.get("version") != VERSION:
            raise LoomComputeError(f"{path}: not a {FORMAT} v{VERSION} checkpoint")
        if int(trainer["world_size"]) != ctx.world_size:
            raise LoomComputeError(
                f"{path} was written by {trainer['world_size']} processes, this run has {ctx.world_size}: the data "
                "position is per process, so resume with the same number of processes",
                saved=trainer["world_size"],
                now=ctx.world_size,
            )
        mine = _read_json(path / f"rank_{ctx.rank:05d}.json", "cannot read")

        # DCP fills the live (sharded) tensors in place; the parts then take them back.
        tensors = {"model": parts.model.state_dict(), "optim_state": parts.optimizer.state_dict()["state"]}
        dcp.load(tensors, storage_reader=JsonMetadataReader(str(path)))
        parts.model.load_state_dict(tensors["model"])
        parts.optimizer.load_state_dict({"state": tensors["optim_state"], "param_groups": trainer["param_groups"]})
        parts.scheduler.load_state_dict(trainer["scheduler"])
        parts.progress.load_state_dict(trainer)
        parts.loader.load_state_dict(mine["loader"])
        parts.rng.load_state_dict(mine["rng"])


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise LoomComputeError(f"{path}: {what} ({exc})") from None


# ---- optimizer hyper-parameters as JSON ----------------------------------------------------------


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
