"""Optimizer, learning-rate schedule and freeze matrix for the trainer.

Freeze matrix (Open-Qwen2VL): the vision tower is frozen unless ``model.vision.trainable``, the
projector is always trained, the LLM is trained unless ``model.llm.trainable`` is false.

AdamW groups follow the common convention: every parameter with two or more dimensions (linear
weights and embedding tables, the tied lm_head included) decays; every 1-D parameter (biases,
norm weights) and scalar does not. Frozen parameters are left out of the optimizer entirely.

Schedule, for the optimizer step ``s`` in ``0 .. total-1`` (the lr that step uses):
``W = ceil(warmup_fraction * total)`` warmup steps, capped at ``total - 1`` so the last step is
always past the warmup; during warmup the lr rises linearly ``lr * (s + 1) / W`` (the first step
gets ``lr / W``, not a wasted 0) and reaches the peak ``lr`` at ``s = W - 1``; from the peak step
to ``s = total - 1`` it follows cosine or linear decay down to ``lr * min_lr_ratio`` exactly at
the last step, or stays at ``lr`` for ``constant`` (which ignores ``min_lr_ratio``). Steps past
the end keep the final value. A one-step run uses ``lr``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from loom_compute.config import RunConfig
from loom_compute.errors import LoomComputeError

PARTS = ("vision", "projector", "llm")


# ---- freeze matrix --------------------------------------------------------------------------


def apply_freeze(model: nn.Module, config: RunConfig) -> dict[str, Any]:
    """Sets requires_grad on model.vision / .projector / .llm per the freeze matrix; returns counts.

    Summary: ``{"trainable_params", "frozen_params", "per_part": {part: {"trainable", "frozen"}}}``,
    counting each tensor once (tied embeddings are one tensor).
    """
    trainable = {"vision": config.model.vision.trainable, "projector": True, "llm": config.model.llm.trainable}
    for part in PARTS:
        getattr(model, part).requires_grad_(trainable[part])

    per_part: dict[str, dict[str, int]] = {}
    for part in PARTS:
        counts = {"trainable": 0, "frozen": 0}
        for p in getattr(model, part).parameters():
            counts["trainable" if p.requires_grad else "frozen"] += p.numel()
        per_part[part] = counts
    seen: set[int] = set()
    totals = {"trainable": 0, "frozen": 0}
    for p in model.parameters():  # the whole model, in case it holds parameters outside the three parts
        if id(p) in seen:
            continue
        seen.add(id(p))
        totals["trainable" if p.requires_grad else "frozen"] += p.numel()
    return {"trainable_params": totals["trainable"], "frozen_params": totals["frozen"], "per_part": per_part}


# ---- optimizer --------------------------------------------------------------------------------


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups over the trainable parameters: ``[decay, no_decay]``, each with ``names``.

    Empty groups are left out. ``names`` is for inspection; ``build_optimizer`` strips it.
    """
    decay: list[tuple[str, nn.Parameter]] = []
    no_decay: list[tuple[str, nn.Parameter]] = []
    for name, p in model.named_parameters():  # deduplicates tied parameters
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 else no_decay).append((name, p))
    groups = []
    for members, wd in ((decay, float(weight_decay)), (no_decay, 0.0)):
        if members:
            groups.append({"params": [p for _, p in members], "weight_decay": wd, "names": [n for n, _ in members]})
    return groups


def build_optimizer(model: nn.Module, config: RunConfig) -> torch.optim.AdamW:
    """AdamW over ``param_groups`` with the config's lr, betas, eps (fused only when on CUDA)."""
    train = config.train
    groups = [{k: v for k, v in g.items() if k != "names"} for g in param_groups(model, train.weight_decay)]
    if not groups:
        raise LoomComputeError("no trainable parameters: model.vision.trainable and model.llm.trainable leave nothing to train")
    on_cuda = all(p.is_cuda for g in groups for p in g["params"])
    return torch.optim.AdamW(
        groups,
        lr=train.lr,
        betas=train.betas,
        eps=train.eps,
        fused=True if on_cuda else None,
    )


# ---- schedule ---------------------------------------------------------------------------------


def warmup_steps(total_steps: int, config: RunConfig) -> int:
    """ceil(warmup_fraction * total), capped at total - 1 so the last step is in the decay."""
    total = _check_total(total_steps)
    wanted = math.ceil(config.train.warmup_fraction * total)
    return max(0, min(wanted, total - 1))


def lr_at(step: int, total_steps: int, config: RunConfig) -> float:
    """The learning rate optimizer step ``step`` (0-based) uses in a run of ``total_steps`` steps."""
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    peak = config.train.lr
    schedule = config.train.schedule
    if schedule not in ("cosine", "linear", "constant"):
        raise LoomComputeError(f"train.schedule: unknown schedule {schedule!r} (cosine, linear or constant)")
    total = _check_total(total_steps)
    warmup = warmup_steps(total, config)
    if step < warmup:
        return peak * (step + 1) / warmup
    if schedule == "constant" or total == 1:
        return peak
    floor = peak * config.train.min_lr_ratio
    peak_step = max(warmup - 1, 0)
    progress = min(1.0, (step - peak_step) / (total - 1 - peak_step))
    if schedule == "linear":
        factor = 1.0 - progress
    else:
        factor = 0.5 * (1.0 + math.cos(math.pi * progress))
    return floor + (peak - floor) * factor


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, config: RunConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR following ``lr_at``: call ``scheduler.step()`` after each ``optimizer.step()``.

    The optimizer's lr must be the config's ``train.lr`` (as ``build_optimizer`` sets it).
    """
    peak = config.train.lr
    _check_total(total_steps)
    lr_at(0, total_steps, config)  # reject a bad schedule now, not on the first step
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_at(step, total_steps, config) / peak)


def _check_total(total_steps: int) -> int:
    if int(total_steps) != total_steps or total_steps < 1:
        raise ValueError(f"total_steps must be a positive integer, got {total_steps!r}")
    return int(total_steps)


# ---- step arithmetic ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSteps:
    optimizer_steps: int  # optimizer steps this run takes
    steps_per_epoch: int  # ceil(num_sequences / global_batch)
    accumulation: int  # micro-batches each rank runs per optimizer step


def steps_per_run(num_sequences: int, config: RunConfig, world_size: int = 1) -> RunSteps:
    """Optimizer steps (``max_steps``, else ``ceil(epochs * ceil(sequences / global_batch))``) and accumulation.

    Accumulation is ``global_batch / (micro_batch * world_size)`` and must divide exactly.
    """
    train = config.train
    global_batch, micro_batch = train.global_batch, train.micro_batch
    if world_size < 1:
        raise LoomComputeError(f"world size must be >= 1, got {world_size}")
    per_step = micro_batch * world_size
    if global_batch % per_step != 0:
        raise LoomComputeError(
            f"train.global_batch {global_batch} is not a multiple of train.micro_batch {micro_batch} x world size "
            f"{world_size} = {per_step}: gradient accumulation must be a whole number of micro-batches",
            global_batch=global_batch,
            micro_batch=micro_batch,
            world_size=world_size,
        )
    if num_sequences < 0:
        raise LoomComputeError(f"number of sequences must be >= 0, got {num_sequences}")
    steps_per_epoch = math.ceil(num_sequences / global_batch)
    if train.max_steps is not None:
        steps = train.max_steps
    else:
        # rounded first so 0.1 * 30 (= 3.0000000000000004) is 3 steps, not 4
        steps = math.ceil(round(train.epochs * steps_per_epoch, 9))
    if steps < 1:
        raise LoomComputeError(
            f"the run has no optimizer steps: {num_sequences} sequences, train.global_batch {global_batch}, "
            f"train.epochs {train.epochs} and train.max_steps null"
        )
    return RunSteps(optimizer_steps=steps, steps_per_epoch=steps_per_epoch, accumulation=global_batch // per_step)
