"""Training pieces: freeze matrix, AdamW parameter groups, learning-rate schedule and step arithmetic."""

from loom_compute.train.optim import (
    RunSteps,
    apply_freeze,
    build_optimizer,
    build_scheduler,
    lr_at,
    param_groups,
    steps_per_run,
    warmup_steps,
)

__all__ = [
    "RunSteps",
    "apply_freeze",
    "build_optimizer",
    "build_scheduler",
    "lr_at",
    "param_groups",
    "steps_per_run",
    "warmup_steps",
]
