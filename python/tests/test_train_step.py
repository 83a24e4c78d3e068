"""train_step reads the device once per optimizer step, not once per micro-batch.

On a GPU every conversion of a tensor to a Python number waits for the device; the step's counts
are summed on the device and read together after the optimizer step. Here (CPU) every such
conversion is counted instead: running 4 micro-batches must read exactly as often as running 1.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from loom_compute.labels import IGNORE_INDEX
from loom_compute.train.distributed import DistContext
from loom_compute.train.trainer import train_step

READS = ("item", "tolist", "__int__", "__float__", "__bool__", "__index__")


class TinyLoss(nn.Module):
    """(loss_sum, n_valid) from the batch's ids, like VisionLanguageModel.forward."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(()))

    def forward(self, batch):
        valid = batch["labels"][:, 1:] != IGNORE_INDEX
        return (self.weight * batch["input_ids"][:, 1:][valid].float()).sum(), valid.sum()


def _batch(rows: int, seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 50, (rows, 12), generator=gen)
    labels = ids.clone()
    labels[:, 8:] = IGNORE_INDEX
    mask = torch.ones_like(ids)
    mask[:, 10:] = 0
    return {"input_ids": ids, "labels": labels, "attention_mask": mask, "pixel_values": torch.zeros(rows, 3, 4, 4)}


def _reads_of_one_step(monkeypatch, micro_batches: int) -> tuple[int, object]:
    count = {"n": 0}
    for name in READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, **kwargs):
            count["n"] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    model = TinyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    ctx = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), backend="gloo", mesh=None)  # type: ignore[arg-type]
    batches = [_batch(2, seed) for seed in range(micro_batches)]
    result = train_step(model, optimizer, batches, ctx, grad_clip=1.0)
    monkeypatch.undo()
    return count["n"], result


def test_reads_do_not_grow_with_micro_batches(monkeypatch):
    one, _ = _reads_of_one_step(monkeypatch, 1)
    four, result = _reads_of_one_step(monkeypatch, 4)
    assert one == four, f"{one} reads with 1 micro-batch, {four} with 4"
    # and the numbers are still right: 4 batches x 2 rows, 7 labelled targets and 10 real tokens per row
    assert (result.sequences, result.images, result.label_tokens, result.real_tokens) == (8, 8, 56, 80)


def test_the_loss_is_the_mean_over_the_labelled_tokens(monkeypatch):
    _, result = _reads_of_one_step(monkeypatch, 3)
    batches = [_batch(2, seed) for seed in range(3)]
    targets = torch.cat([b["input_ids"][:, 1:8].flatten() for b in batches]).double()
    assert result.loss == pytest.approx(float(targets.mean()), rel=1e-6)
