"""Training metrics: ``metrics.jsonl``, model FLOPs and MFU, TensorBoard, the loss-curve PNG.

**MFU** (model FLOPs utilisation) uses the formula of ``shared/bench/hf_reference_step.py`` so the
two are comparable::

    FLOPs per step = 6 * N_trained * T  +  k * N_vision * P

with ``N_trained`` the trained parameters outside the vision tower (each tensor once; the tied
embedding counts once), ``T`` the real (non-padding) tokens of the step, ``N_vision`` the vision
tower's parameters, ``P`` the vision patches the step encoded (images x patches per image), and
``k = 2`` for a frozen tower (forward only) or 6 when it is trained. Attention's own FLOPs are
left out, so MFU is slightly understated; Loom's vocabulary projection runs only at labelled
positions, but the formula counts it everywhere, as "model FLOPs" do. MFU = FLOPs / step
seconds / (processes x peak), peak being the GPU's dense bf16 rate (``LOOM_PEAK_TFLOPS`` overrides;
unknown devices and CPUs report null).
"""

from __future__ import annotations

import json
import math
import os
import resource
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

# Dense bf16 peak TFLOP/s per GPU, by a substring of torch.cuda.get_device_name().
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "H800": 989.0, "A100": 312.0, "A800": 312.0, "L40S": 362.0, "A6000": 155.0}


def peak_tflops(device: torch.device) -> float | None:
    override = os.environ.get("LOOM_PEAK_TFLOPS")
    if override:
        return float(override)
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """``trained`` (outside the vision tower), ``vision`` and whether the vision tower trains."""
    vision_ids = {id(p) for p in model.vision.parameters()}
    seen: set[int] = set()
    trained = 0
    for p in model.parameters():
        if id(p) in seen or id(p) in vision_ids:
            continue
        seen.add(id(p))
        if p.requires_grad:
            trained += p.numel()
    vision = sum(p.numel() for p in model.vision.parameters())
    vision_trained = any(p.requires_grad for p in model.vision.parameters())
    return {"trained": trained, "vision": vision, "vision_trained": int(vision_trained)}


def model_flops(counts: Mapping[str, int], tokens: float, patches: float) -> float:
    vision_factor = 6 if counts["vision_trained"] else 2
    return 6.0 * counts["trained"] * tokens + vision_factor * counts["vision"] * patches


def memory_gib(device: torch.device) -> float:
    """Peak memory of this process: CUDA allocator peak on a GPU, peak resident set on a CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


class MetricsLog:
    """Appends one JSON object per logged step to ``metrics.jsonl`` (rank 0 only).

    On resume, lines for steps after the checkpoint (run, then lost with the process) are dropped,
    so the file reads as one uninterrupted run.
    """

    def __init__(self, path: Path, enabled: bool, resume_step: int | None, tensorboard_dir: Path | None = None) -> None:
        self.path = Path(path)
        self.enabled = enabled
        self._tensorboard = None
        if not enabled:
            return
        kept = [r for r in read_metrics(self.path) if r["step"] <= resume_step] if resume_step is not None else []
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
        os.replace(tmp, self.path)
        self._file = open(self.path, "a", encoding="utf-8")
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                from loom_compute.errors import ConfigError

                raise ConfigError(
                    f"train.tensorboard is true but TensorBoard is not installed ({exc}); "
                    "pip install 'loom-compute[tensorboard]' or set train.tensorboard false",
                    key="train.tensorboard",
                ) from None
            self._tensorboard = SummaryWriter(str(tensorboard_dir), purge_step=None if resume_step is None else resume_step + 1)

    def write(self, record: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tensorboard is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and value is not None and math.isfinite(value):
                    self._tensorboard.add_scalar(f"train/{key}", value, record["step"])

    def close(self) -> None:
        if not self.enabled:
            return
        self._file.close()
        if self._tensorboard is not None:
            self._tensorboard.close()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line cut by a crash ends the readable log
    return rows


def plot_loss_curve(rows: Iterable[Mapping[str, Any]], out: Path, title: str, reference: Mapping[str, float] | None = None) -> Path:
    """PNG of the loss per step (and a moving average), with the learning rate on a second axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if isinstance(r.get("loss"), (int, float))]
    steps = [r["step"] for r in rows]
    losses = [r["loss"] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    ax.plot(steps, losses, color="#9ab", linewidth=0.8, label="loss")
    window = max(1, len(losses) // 25)
    if window > 1:
        smooth = [sum(losses[max(0, i - window + 1) : i + 1]) / len(losses[max(0, i - window + 1) : i + 1]) for i in range(len(losses))]
        ax.plot(steps, smooth, color="#147", linewidth=1.6, label=f"mean of {window}")
    for label, value in (reference or {}).items():
        ax.axhline(value, color="#c44", linestyle="--", linewidth=1, label=label)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (nats per target token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if rows and "lr" in rows[0]:
        lr_axis = ax.twinx()
        lr_axis.plot(steps, [r["lr"] for r in rows], color="#e90", linewidth=0.8, alpha=0.7)
        lr_axis.set_ylabel("learning rate", color="#e90")
    ax.legend(loc="upper right")
    fig.tight_layout()
    tmp = Path(out).with_name(Path(out).name + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, out)
    return Path(out)
