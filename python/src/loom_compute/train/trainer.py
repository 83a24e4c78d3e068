"""The training loop: packed micro-batches -> globally normalised loss -> AdamW step, resumable.

One optimizer step takes ``accumulation`` micro-batches on every rank (``steps_per_run``). The
loss of the step is the cross-entropy summed over every labelled token of the global batch
(all ranks, all micro-batches) divided by the number of those tokens: each micro-batch's backward
uses ``loss_sum * world_size / global_label_tokens`` (FSDP averages gradients over ranks, the
``world_size`` undoes that average), so a short caption weighs as much per token as a long
one, whatever micro-batch or rank it lands on. Gradients are clipped by their global norm.

A rank's data stream wraps into the next epoch by itself, so every rank always runs the same
number of micro-batches (ranks may differ by one batch per epoch). The run stops after
``optimizer_steps``; checkpoints every ``train.checkpoint_every`` steps and at the end; at the
end the weights are exported (safetensors) and the loss curve is drawn.

``Trainer`` owns the parts (model, optimizer, scheduler, loader, progress) and hands them to the
``Checkpointer`` as Stateful objects; ``train_step`` is one optimizer step and reads the host
only once, after the step, for the numbers it reports.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from loom_compute import protocol
from loom_compute.checkpoints import checkpoint_dir, latest_checkpoint
from loom_compute.config import RunConfig, load_run_config
from loom_compute.errors import ConfigError, LoomComputeError, UsageError
from loom_compute.labels import IGNORE_INDEX
from loom_compute.train.distributed import DistContext, all_reduce_sum, barrier, init_distributed, shutdown_distributed


@dataclass(frozen=True)
class StepResult:
    loss: float  # mean cross-entropy per labelled token over the global batch
    label_tokens: int  # labelled tokens of the global batch
    real_tokens: int  # non-padding tokens of the global batch
    images: int
    sequences: int
    grad_norm: float


def label_token_count(batch: Mapping[str, Any]) -> torch.Tensor:
    """Tokens whose prediction is trained: ``labels[t] != -100`` for t >= 1 (the model shifts by one)."""
    return (batch["labels"][:, 1:] != IGNORE_INDEX).sum()


def to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    non_blocking = device.type == "cuda"
    return {k: v.to(device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def clip_grad_norm(model: nn.Module, max_norm: float | None) -> torch.Tensor:
    """The global gradient norm (a tensor, so reading it can wait), after clipping to ``max_norm``."""
    params = [p for p in model.parameters() if p.grad is not None]
    if not params:
        return torch.zeros(())
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm is not None else math.inf, foreach=True)
    if hasattr(norm, "full_tensor"):
        norm = norm.full_tensor()
    return norm


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    micro_batches: Sequence[Mapping[str, Any]],
    ctx: DistContext,
    grad_clip: float | None,
) -> StepResult:
    """One optimizer step over this rank's micro-batches (every rank calls it with its own share).

    Counts are summed on the device and read back once, after the optimizer step, so the host
    never waits for the device between micro-batches.
    """
    device = ctx.device
    local_labels = torch.stack([label_token_count(b) for b in micro_batches]).sum().to(device, torch.float64)
    global_labels = all_reduce_sum(local_labels.reshape(1))[0]
    # Kept on the device (no read); float32 because a Python float multiplying the fp32 loss is
    # rounded to fp32 too, so the gradients are bit for bit what they were with a host-side scale.
    scale = (ctx.world_size / global_labels.clamp(min=1.0)).to(torch.float32)
    zero = torch.zeros((), dtype=torch.float64, device=device)
    loss_sum_local, real_tokens = zero.clone(), zero.clone()
    images = sequences = 0  # from shapes, which the host knows without asking the device
    for batch in micro_batches:
        batch = to_device(batch, device)
        loss_sum, _ = model(batch)
        (loss_sum * scale).backward()
        loss_sum_local += loss_sum.detach().double()
        real_tokens += batch["attention_mask"].sum()
        images += int(batch["pixel_values"].shape[0]) if batch.get("pixel_values") is not None else 0
        sequences += int(batch["input_ids"].shape[0])
    norm = clip_grad_norm(model, grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    shapes = torch.tensor([images, sequences], dtype=torch.float64, device=device)
    totals = all_reduce_sum(torch.cat([loss_sum_local.reshape(1), real_tokens.reshape(1), shapes]))
    # The one read of the step: the reduced sums, the label count and the norm together.
    total_loss, total_tokens, total_images, total_sequences, labels, grad_norm = torch.cat(
        [totals, global_labels.reshape(1), norm.detach().to(device, torch.float64).reshape(1)]
    ).tolist()
    return StepResult(
        loss=total_loss / max(labels, 1.0),
        label_tokens=int(labels),
        real_tokens=int(total_tokens),
        images=int(total_images),
        sequences=int(total_sequences),
        grad_norm=grad_norm,
    )


def endless(loader: Any) -> Iterator[dict[str, Any]]:
    """The loader's batches, epoch after epoch (the loader advances its own epoch counter)."""
    empty_passes = 0
    while True:
        produced = False
        for batch in loader:
            produced = True
            yield batch
        # A loader restored at the very end of an epoch has nothing left of it: one empty pass is normal.
        empty_passes = 0 if produced else empty_passes + 1
        if empty_passes >= 2:
            raise LoomComputeError("the packed data gave this rank no batches: fewer sequences than processes x workers?")


def packed_shards(config: RunConfig) -> tuple[Path, list[Path]]:
    """The finished pack ``data.packed`` and its shards."""
    from loom_compute.data.packed import packed_shard_paths

    packed = config.data.packed
    if not packed:
        raise ConfigError("data.packed is not set: point it at the output directory of `loom pack`", key="data.packed")
    root = Path(packed)
    if not root.is_dir():
        raise ConfigError(f"data.packed = {packed!r} is not a directory", key="data.packed")
    if not (root / "pack.json").is_file():
        raise LoomComputeError(f"{root}: the pack is not finished (no pack.json); rerun the same `loom pack` command to complete it")
    return root, packed_shard_paths(root)


def run_training(config_path: str | Path, resume: bool = False, stop_after_steps: int | None = None, compile_backend: str = "inductor") -> dict[str, Any]:
    """The `train` verb: everything from the config file to the export. Every rank runs this."""
    config = load_run_config(config_path)
    run_dir = Path(config_path).resolve().parent
    ctx = init_distributed(config)
    try:
        trainer = Trainer(config, run_dir, ctx, resume=resume, compile_backend=compile_backend)
        summary = trainer.train(stop_after_steps)
        # Ranks leave together (on success only: after an error a peer may never arrive), so none
        # exits while another is still writing and gloo's threads see its sockets close.
        barrier()
        return summary
    finally:
        shutdown_distributed()


class Trainer:
    """One rank's training run: builds the parts, restores them when resuming, runs the steps."""

    def __init__(self, config: RunConfig, run_dir: Path, ctx: DistContext, *, resume: bool, compile_backend: str = "inductor") -> None:
        from loom_compute.data import PackedLoader
        from loom_compute.model.builder import attention_backend, build_model, tokenizer_info
        from loom_compute.train.checkpoint import Checkpointer, ModelState, OptimizerState, TrainingParts, TrainProgress
        from loom_compute.train.metrics import parameter_counts
        from loom_compute.train.optim import apply_freeze, build_optimizer, build_scheduler, steps_per_run
        from loom_compute.train.parallel import parallelize

        self.config, self.run_dir, self.ctx = config, run_dir, ctx
        existing = latest_checkpoint(run_dir)
        if existing is not None and not resume:
            raise UsageError(f"{run_dir} already has checkpoint {existing.name}: pass --resume to continue it, or train under another name")
        if ctx.device.type == "cpu" and attention_backend(config) == "flex":
            raise ConfigError("train.attention 'flex' needs CUDA to train (FlexAttention has no CPU backward): use 'auto' or 'sdpa'", key="train.attention")
        self.packed_root, shards = packed_shards(config)
        tokenizer_sha, vocab_size = tokenizer_info(config.tokenizer)

        torch.manual_seed(config.seed)  # identical initial weights on every rank before sharding
        self.model = build_model(config, tokenizer_vocab_size=vocab_size)
        self.freeze = apply_freeze(self.model, config)
        self.parameter_counts = parameter_counts(self.model)
        parallelize(self.model, ctx.mesh, config, compile_backend)
        self.model.train()

        self.loader = PackedLoader.for_run(
            config,
            tokenizer_sha,
            shards,
            num_workers=config.train.loader_workers,
            shuffle_buffer=config.train.shuffle_buffer,
            rank=ctx.rank,
            world_size=ctx.world_size,
            pin_memory=ctx.device.type == "cuda",
        )
        self.plan = steps_per_run(self.loader.dataset.total_sequences, config, ctx.world_size)
        self.optimizer = build_optimizer(self.model, config)
        self.scheduler = build_scheduler(self.optimizer, self.plan.optimizer_steps, config)
        self.progress = TrainProgress(total_steps=self.plan.optimizer_steps, stage=config.stage)
        parts = TrainingParts(
            model=ModelState(self.model),
            optimizer=OptimizerState(self.model, self.optimizer),
            scheduler=self.scheduler,
            progress=self.progress,
            loader=self.loader,
        )
        self.checkpointer = Checkpointer(run_dir, parts, ctx, config.train.keep_checkpoints)
        self.resumed_from: int | None = None
        self.resume = resume
        if resume:
            self._restore()

    def _restore(self) -> None:
        checkpoint = latest_checkpoint(self.run_dir)
        if checkpoint is None:
            return
        self.checkpointer.load(checkpoint)
        self.resumed_from = self.progress.step
        if self.progress.saved_total_steps != self.plan.optimizer_steps:
            protocol.log(
                "warning",
                f"the checkpoint's run had {self.progress.saved_total_steps} steps, this one has {self.plan.optimizer_steps}: the schedule changes",
            )
        protocol.log("info", f"resumed from {checkpoint} (step {self.progress.step})")

    def train(self, stop_after_steps: int | None = None) -> dict[str, Any]:
        from loom_compute.train.export import export_model
        from loom_compute.train.metrics import MetricsLog, peak_tflops

        config, ctx, plan, progress = self.config, self.ctx, self.plan, self.progress
        train = config.train
        start_step = progress.step
        log = MetricsLog(
            self.run_dir / "metrics.jsonl",
            enabled=ctx.is_primary,
            resume_step=start_step if self.resume else None,
            tensorboard_dir=self.run_dir / "tensorboard" if train.tensorboard else None,
        )
        peak = peak_tflops(ctx.device)
        protocol.log(
            "info",
            f"{config.stage}: {plan.optimizer_steps} steps of {train.global_batch} sequences "
            f"({plan.accumulation} micro-batch(es) of {train.micro_batch} x {ctx.world_size} process(es)); "
            f"{self.freeze['trainable_params']:,} trainable / {self.freeze['frozen_params']:,} frozen parameters",
        )

        stream = endless(self.loader)
        stop_at = plan.optimizer_steps if stop_after_steps is None else min(plan.optimizer_steps, stop_after_steps)
        last_saved = start_step if self.resumed_from is not None else None
        started = time.perf_counter()
        result: StepResult | None = None
        while progress.step < stop_at:
            t0 = time.perf_counter()
            micro = [next(stream) for _ in range(plan.accumulation)]
            t_data = time.perf_counter() - t0
            lr = self.scheduler.get_last_lr()[0]
            result = train_step(self.model, self.optimizer, micro, ctx, train.grad_clip)
            self.scheduler.step()
            if ctx.device.type == "cuda":
                torch.cuda.synchronize(ctx.device)
            dt = time.perf_counter() - t0
            progress.step += 1
            step = progress.step
            if not math.isfinite(result.loss):
                raise LoomComputeError(f"the loss is {result.loss} at step {step}; the last good checkpoint is in {self.run_dir / 'checkpoints'}", step=step)
            progress.seen["tokens"] += result.real_tokens
            progress.seen["label_tokens"] += result.label_tokens
            progress.seen["images"] += result.images
            progress.seen["sequences"] += result.sequences
            if step % train.log_every == 0 or step in (start_step + 1, stop_at):
                record = self._step_record(result, lr, dt, t_data, peak)
                log.write(record)
                protocol.metric(**record)
            protocol.progress(step, plan.optimizer_steps, unit="steps", loss=round(result.loss, 4))
            if step % train.checkpoint_every == 0 or step == stop_at:
                self.checkpointer.save()
                last_saved = step
        seconds = time.perf_counter() - started
        log.close()

        step = progress.step
        finished = step >= plan.optimizer_steps
        export_dir = export_model(self.model, self.run_dir / "export", config, step, ctx) if finished else None
        summary: dict[str, Any] = {
            "run_dir": str(self.run_dir),
            "stage": config.stage,
            "steps": step,
            "total_steps": plan.optimizer_steps,
            "finished": finished,
            "resumed_from_step": self.resumed_from,
            "final_loss": None if result is None else result.loss,
            "seconds": seconds,
            "steps_this_run": step - start_step,
            "seen": progress.seen,
            "world_size": ctx.world_size,
            "trainable_params": self.freeze["trainable_params"],
            "frozen_params": self.freeze["frozen_params"],
            "checkpoint": None if last_saved is None else str(checkpoint_dir(self.run_dir, last_saved)),
            "export": None if export_dir is None else str(export_dir),
            "metrics": str(self.run_dir / "metrics.jsonl"),
            "packed": str(self.packed_root),
        }
        if ctx.is_primary:
            self._finish_summary(summary)
        return summary

    def _step_record(self, result: StepResult, lr: float, dt: float, t_data: float, peak: float | None) -> dict[str, Any]:
        from loom_compute.train.metrics import memory_gib, model_flops

        ctx = self.ctx
        patches = result.images * self.model.patch_grid**2
        flops = model_flops(self.parameter_counts, result.real_tokens, patches)
        return {
            "step": self.progress.step,
            "loss": result.loss,
            "lr": lr,
            "grad_norm": result.grad_norm,
            "label_tokens": result.label_tokens,
            "tokens": result.real_tokens,
            "images": result.images,
            "step_s": dt,
            "data_s": t_data,
            "tokens_per_s": result.real_tokens / dt,
            "images_per_s": result.images / dt,
            "tflops_per_s_per_device": flops / dt / ctx.world_size / 1e12,
            "mfu": flops / dt / (ctx.world_size * peak * 1e12) if peak else None,
            "mem_gib": memory_gib(ctx.device),
            "epoch": self.loader.epoch,
        }

    def _finish_summary(self, summary: dict[str, Any]) -> None:
        """Rank 0: the loss curve, first loss and throughput means, and train.json."""
        from loom_compute.atomic import write_json_atomic
        from loom_compute.train.metrics import plot_loss_curve, read_metrics

        rows = read_metrics(self.run_dir / "metrics.jsonl")
        if rows:
            title = f"{self.config.name} ({self.config.stage})"
            summary["loss_curve"] = str(plot_loss_curve(rows, self.run_dir / "loss.png", title))
            summary["first_loss"] = rows[0]["loss"]
            window = rows[-max(1, len(rows) // 10) :]
            summary["mean_tokens_per_s"] = sum(r["tokens_per_s"] for r in window) / len(window)
            summary["mean_images_per_s"] = sum(r["images_per_s"] for r in window) / len(window)
            mfus = [r["mfu"] for r in window if r.get("mfu") is not None]
            summary["mean_mfu"] = sum(mfus) / len(mfus) if mfus else None
        write_json_atomic(self.run_dir / "train.json", summary)
