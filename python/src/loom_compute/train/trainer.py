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
from loom_compute.config import load_run_config, read_tokenizer
from loom_compute.errors import ConfigError, LoomComputeError, UsageError
from loom_compute.train.distributed import DistContext, all_reduce_sum, init_distributed, shutdown_distributed

IGNORE_INDEX = -100


@dataclass(frozen=True)
class StepResult:
    loss: float  # mean cross-entropy per labelled token over the global batch
    label_tokens: int  # labelled tokens of the global batch
    real_tokens: int  # non-padding tokens of the global batch
    images: int
    sequences: int
    grad_norm: float


def label_token_count(batch: Mapping[str, Any]) -> int:
    """Tokens whose prediction is trained: ``labels[t] != -100`` for t >= 1 (the model shifts by one)."""
    return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())


def to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    non_blocking = device.type == "cuda"
    return {k: v.to(device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def grad_norm_and_clip(model: nn.Module, max_norm: float | None) -> float:
    params = [p for p in model.parameters() if p.grad is not None]
    if not params:
        return 0.0
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm is not None else math.inf, foreach=True)
    if hasattr(norm, "full_tensor"):
        norm = norm.full_tensor()
    return float(norm)


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    micro_batches: Sequence[Mapping[str, Any]],
    ctx: DistContext,
    grad_clip: float | None,
) -> StepResult:
    """One optimizer step over this rank's micro-batches (every rank calls it with its own share)."""
    local_labels = sum(label_token_count(b) for b in micro_batches)
    (global_labels,) = all_reduce_sum([float(local_labels)], ctx.device)
    scale = ctx.world_size / max(global_labels, 1.0)
    loss_sum_local = torch.zeros((), dtype=torch.float64, device=ctx.device)
    real_tokens = images = sequences = 0
    for batch in micro_batches:
        batch = to_device(batch, ctx.device)
        loss_sum, _ = model(batch)
        (loss_sum * scale).backward()
        loss_sum_local += loss_sum.detach().double()
        real_tokens += int(batch["attention_mask"].sum())
        images += int(batch["pixel_values"].shape[0]) if batch.get("pixel_values") is not None else 0
        sequences += int(batch["input_ids"].shape[0])
    norm = grad_norm_and_clip(model, grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    total_loss, total_tokens, total_images, total_sequences = all_reduce_sum(
        [float(loss_sum_local), float(real_tokens), float(images), float(sequences)], ctx.device
    )
    return StepResult(
        loss=total_loss / max(global_labels, 1.0),
        label_tokens=int(global_labels),
        real_tokens=int(total_tokens),
        images=int(total_images),
        sequences=int(total_sequences),
        grad_norm=norm,
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


def packed_shards(config: Mapping[str, Any]) -> tuple[Path, list[Path]]:
    packed = config["data"].get("packed")
    if not packed:
        raise ConfigError("data.packed is not set: point it at the output directory of `loom pack`", key="data.packed")
    root = Path(packed)
    if not root.is_dir():
        raise ConfigError(f"data.packed = {packed!r} is not a directory", key="data.packed")
    if not (root / "pack.json").is_file():
        raise LoomComputeError(f"{root}: the pack is not finished (no pack.json); rerun the same `loom pack` command to complete it")
    shards = sorted(root.glob("w*/*.tar"))
    if not shards:
        raise LoomComputeError(f"{root}: no packed shards (w*/*.tar)")
    return root, shards


def tokenizer_info(config: Mapping[str, Any]) -> tuple[str, int | None]:
    """(sha256 of tokenizer.json, its vocabulary size)."""
    from tokenizers import Tokenizer

    sha256, data = read_tokenizer(config)
    return sha256, Tokenizer.from_str(data.decode("utf-8")).get_vocab_size()


def run_training(config_path: str | Path, resume: bool = False, stop_after_steps: int | None = None, compile_backend: str = "inductor") -> dict[str, Any]:
    """The `train` verb: everything from the config file to the export. Every rank runs this."""
    config = load_run_config(config_path)
    run_dir = Path(config_path).resolve().parent
    ctx = init_distributed(config)
    try:
        return _train(config, run_dir, ctx, resume, stop_after_steps, compile_backend)
    finally:
        shutdown_distributed()


def _train(config: dict[str, Any], run_dir: Path, ctx: DistContext, resume: bool, stop_after_steps: int | None, compile_backend: str) -> dict[str, Any]:
    from loom_compute.data import PackedLoader
    from loom_compute.model import VisionLanguageModel
    from loom_compute.model.vlm import attention_backend
    from loom_compute.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
    from loom_compute.train.export import export_model
    from loom_compute.train.metrics import MetricsLog, memory_gib, model_flops, parameter_counts, peak_tflops, plot_loss_curve, read_metrics
    from loom_compute.train.optim import apply_freeze, build_optimizer, build_scheduler, steps_per_run
    from loom_compute.train.parallel import parallelize

    train = config["train"]
    existing = latest_checkpoint(run_dir)
    if existing is not None and not resume:
        raise UsageError(f"{run_dir} already has checkpoint {existing.name}: pass --resume to continue it, or train under another name")
    if ctx.device.type == "cpu" and attention_backend(config) == "flex":
        raise ConfigError("train.attention 'flex' needs CUDA to train (FlexAttention has no CPU backward): use 'auto' or 'sdpa'", key="train.attention")
    packed_root, shards = packed_shards(config)
    tokenizer_sha, vocab_size = tokenizer_info(config)

    torch.manual_seed(int(config["seed"]))  # identical initial weights on every rank before sharding
    model = VisionLanguageModel.from_run_config(config, tokenizer_vocab_size=vocab_size)
    freeze = apply_freeze(model, config)
    counts = parameter_counts(model)
    parallelize(model, ctx.mesh, config, compile_backend)
    model.train()

    loader = PackedLoader.for_run(
        config,
        tokenizer_sha,
        shards,
        num_workers=int(train["loader_workers"]),
        shuffle_buffer=int(train["shuffle_buffer"]),
        rank=ctx.rank,
        world_size=ctx.world_size,
        pin_memory=ctx.device.type == "cuda",
    )
    plan = steps_per_run(loader.dataset.total_sequences, config, ctx.world_size)
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, plan.optimizer_steps, config)

    start_step, seen = 0, {"tokens": 0, "label_tokens": 0, "images": 0, "sequences": 0}
    resumed_from = None
    checkpoint = latest_checkpoint(run_dir) if resume else None
    if checkpoint is not None:
        state = load_checkpoint(checkpoint, model, optimizer, scheduler, loader, ctx)
        start_step, resumed_from = int(state["step"]), int(state["step"])
        seen = {k: int(state.get("seen", {}).get(k, 0)) for k in seen}
        if int(state.get("total_steps", plan.optimizer_steps)) != plan.optimizer_steps:
            protocol.log("warning", f"the checkpoint's run had {state['total_steps']} steps, this one has {plan.optimizer_steps}: the schedule changes")
        protocol.log("info", f"resumed from {checkpoint} (step {start_step})")

    log = MetricsLog(
        run_dir / "metrics.jsonl",
        enabled=ctx.is_primary,
        resume_step=start_step if resume else None,
        tensorboard_dir=run_dir / "tensorboard" if train["tensorboard"] else None,
    )
    peak = peak_tflops(ctx.device)
    protocol.log(
        "info",
        f"{config['stage']}: {plan.optimizer_steps} steps of {train['global_batch']} sequences "
        f"({plan.accumulation} micro-batch(es) of {train['micro_batch']} x {ctx.world_size} process(es)); "
        f"{freeze['trainable_params']:,} trainable / {freeze['frozen_params']:,} frozen parameters",
    )

    stream = endless(loader)
    stop_at = plan.optimizer_steps if stop_after_steps is None else min(plan.optimizer_steps, stop_after_steps)
    last_saved = start_step if checkpoint is not None else None
    started = time.perf_counter()
    result: StepResult | None = None
    step = start_step
    while step < stop_at:
        t0 = time.perf_counter()
        micro = [next(stream) for _ in range(plan.accumulation)]
        t_data = time.perf_counter() - t0
        lr = scheduler.get_last_lr()[0]
        result = train_step(model, optimizer, micro, ctx, train["grad_clip"])
        scheduler.step()
        if ctx.device.type == "cuda":
            torch.cuda.synchronize(ctx.device)
        dt = time.perf_counter() - t0
        step += 1
        if not math.isfinite(result.loss):
            raise LoomComputeError(f"the loss is {result.loss} at step {step}; the last good checkpoint is in {run_dir / 'checkpoints'}", step=step)
        seen["tokens"] += result.real_tokens
        seen["label_tokens"] += result.label_tokens
        seen["images"] += result.images
        seen["sequences"] += result.sequences
        if step % int(train["log_every"]) == 0 or step in (start_step + 1, stop_at):
            patches = result.images * model.patch_grid**2
            flops = model_flops(counts, result.real_tokens, patches)
            record = {
                "step": step,
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
                "epoch": loader.epoch,
            }
            log.write(record)
            protocol.metric(**record)
        protocol.progress(step, plan.optimizer_steps, unit="steps", loss=round(result.loss, 4))
        if step % int(train["checkpoint_every"]) == 0 or step == stop_at:
            save_checkpoint(
                run_dir, step, model, optimizer, scheduler, loader, ctx, int(train["keep_checkpoints"]),
                {"total_steps": plan.optimizer_steps, "seen": seen, "config_stage": config["stage"]},
            )
            last_saved = step
    seconds = time.perf_counter() - started
    log.close()

    finished = step >= plan.optimizer_steps
    export_dir = None
    if finished:
        export_dir = export_model(model, run_dir / "export", config, step, ctx)
    summary: dict[str, Any] = {
        "run_dir": str(run_dir),
        "stage": config["stage"],
        "steps": step,
        "total_steps": plan.optimizer_steps,
        "finished": finished,
        "resumed_from_step": resumed_from,
        "final_loss": None if result is None else result.loss,
        "seconds": seconds,
        "steps_this_run": step - start_step,
        "seen": seen,
        "world_size": ctx.world_size,
        "trainable_params": freeze["trainable_params"],
        "frozen_params": freeze["frozen_params"],
        "checkpoint": None if last_saved is None else str(run_dir / "checkpoints" / f"step_{last_saved:08d}"),
        "export": None if export_dir is None else str(export_dir),
        "metrics": str(run_dir / "metrics.jsonl"),
        "packed": str(packed_root),
    }
    if ctx.is_primary:
        rows = read_metrics(run_dir / "metrics.jsonl")
        if rows:
            summary["loss_curve"] = str(plot_loss_curve(rows, run_dir / "loss.png", f"{config['name']} ({config['stage']})"))
            summary["first_loss"] = rows[0]["loss"]
            window = rows[-max(1, len(rows) // 10) :]
            summary["mean_tokens_per_s"] = sum(r["tokens_per_s"] for r in window) / len(window)
            summary["mean_images_per_s"] = sum(r["images_per_s"] for r in window) / len(window)
            mfus = [r["mfu"] for r in window if r.get("mfu") is not None]
            summary["mean_mfu"] = sum(mfus) / len(mfus) if mfus else None
        from loom_compute.atomic import write_json_atomic

        write_json_atomic(run_dir / "train.json", summary)
    return summary
