"""Optimizer pieces on the tiny preset: the freeze matrix, AdamW groups, the lr schedule (properties,
hand-computed values at chosen steps, the documented formula written out here, and torch's own
schedulers), step/accumulation arithmetic, and one real optimizer
step that moves the projector and LLM while leaving the frozen vision tower bit-identical."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from loom_compute.config import RunConfig, parse_run_config
from loom_compute.data.packed import collate_packed
from loom_compute.errors import LoomComputeError
from loom_compute.model import VisionLanguageModel
from loom_compute.model.builder import build_model
from loom_compute.train import (
    apply_freeze,
    build_optimizer,
    build_scheduler,
    lr_at,
    param_groups,
    steps_per_run,
    warmup_steps,
)

ROOT = Path(__file__).resolve().parents[2]
TOKENIZER = Tokenizer.from_file(str(ROOT / "assets" / "tokenizer" / "tiny" / "tokenizer.json"))
IMAGE_ID = TOKENIZER.token_to_id("<image>")
EOS_ID = TOKENIZER.token_to_id("<|im_end|>")
PAD_ID = TOKENIZER.token_to_id("<|endoftext|>")


def _config() -> RunConfig:
    config = json.loads((ROOT / "vectors" / "config" / "valid" / "tiny-pretrain.json").read_text())["config"]
    config["tokenizer"]["path"] = str(ROOT / config["tokenizer"]["path"])
    return parse_run_config(config)


def _model(seed: int = 0) -> VisionLanguageModel:
    torch.manual_seed(seed)
    return build_model(_config())


def _with(config: RunConfig, **train) -> RunConfig:
    return replace(config, train=replace(config.train, **train))


def _trainable(config: RunConfig, vision: bool, llm: bool = True) -> RunConfig:
    model = config.model
    return replace(config, model=replace(model, vision=replace(model.vision, trainable=vision), llm=replace(model.llm, trainable=llm)))


def _unique_params(module: torch.nn.Module) -> dict[int, torch.nn.Parameter]:
    return {id(p): p for p in module.parameters()}


@pytest.fixture(scope="module")
def model() -> VisionLanguageModel:
    return _model()


def _batch(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    sequences = []
    for caption in ("a red square", "two blue circles"):
        text = TOKENIZER.encode("\n" + caption).ids + [EOS_ID]
        tokens = np.array([IMAGE_ID] * 16 + text, dtype=np.int32)
        loss = np.array([0] * 17 + [1] * (len(text) - 1), dtype=np.uint8)
        images = rng.integers(0, 256, size=(1, 64, 64, 3), dtype=np.uint8)
        sequences.append({"tokens": tokens, "loss": loss, "doclens": np.array([len(tokens)], dtype=np.int32), "images": images})
    return collate_packed(sequences, seq_len=40, pad_id=PAD_ID, image_mean=[0.5] * 3, image_std=[0.5] * 3)


# ---- freeze matrix ------------------------------------------------------------------------------


@pytest.mark.parametrize("vision_trainable", [False, True])
@pytest.mark.parametrize("llm_trainable", [True, False])
def test_freeze_matrix(model, vision_trainable, llm_trainable):
    config = _trainable(_config(), vision_trainable, llm_trainable)
    summary = apply_freeze(model, config)
    expected = {"vision": vision_trainable, "projector": True, "llm": llm_trainable}
    for part, trained in expected.items():
        params = list(_unique_params(getattr(model, part)).values())
        assert params and all(p.requires_grad == trained for p in params), part
        size = sum(p.numel() for p in params)
        assert summary["per_part"][part] == {"trainable": size if trained else 0, "frozen": 0 if trained else size}
    everything = _unique_params(model).values()
    assert summary["trainable_params"] == sum(p.numel() for p in everything if p.requires_grad)
    assert summary["frozen_params"] == sum(p.numel() for p in everything if not p.requires_grad)
    assert summary["trainable_params"] + summary["frozen_params"] == sum(p.numel() for p in everything)


def test_recipe_default_freezes_only_the_vision_tower(model):
    summary = apply_freeze(model, _config())  # tiny-pretrain: vision frozen, llm trainable
    assert summary["per_part"]["vision"]["trainable"] == 0
    assert summary["per_part"]["projector"]["frozen"] == 0
    assert summary["per_part"]["llm"]["frozen"] == 0


# ---- parameter groups ---------------------------------------------------------------------------


@pytest.mark.parametrize("vision_trainable", [False, True])
def test_param_groups_partition_the_trainable_parameters(model, vision_trainable):
    config = _trainable(_config(), vision_trainable)
    apply_freeze(model, config)
    groups = param_groups(model, 0.1)
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    listed = [id(p) for g in groups for p in g["params"]]
    assert len(listed) == len(set(listed)), "a parameter is in two groups (or twice in one)"
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert set(listed) == trainable
    named = dict(model.named_parameters())
    decay, no_decay = groups
    for group in groups:
        assert len(group["names"]) == len(group["params"])
        assert all(named[n] is p for n, p in zip(group["names"], group["params"]))
    assert all(p.ndim >= 2 for p in decay["params"])
    assert all(p.ndim <= 1 for p in no_decay["params"])
    assert any(n.endswith("bias") for n in no_decay["names"]) and any("norm" in n for n in no_decay["names"])
    assert not any(n.endswith("bias") or "norm" in n for n in decay["names"])
    # Embeddings decay; the tied lm_head is the same tensor and is listed once.
    embedding = model.llm.get_input_embeddings().weight
    assert model.llm.lm_head.weight is embedding
    assert sum(p is embedding for p in decay["params"]) == 1
    assert any(n.startswith("vision.") for n in decay["names"]) == vision_trainable


def test_build_optimizer_uses_the_config(model):
    config = _with(_config(), lr=3e-4, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.05)
    apply_freeze(model, config)
    optimizer = build_optimizer(model, config)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.05, 0.0]
    for group in optimizer.param_groups:
        assert group["lr"] == 3e-4 and group["betas"] == (0.8, 0.9) and group["eps"] == 1e-6
        assert "names" not in group
    assert not optimizer.defaults["fused"]  # CPU parameters: no fused kernel
    assert sum(len(g["params"]) for g in optimizer.param_groups) == sum(1 for p in model.parameters() if p.requires_grad)


def test_nothing_to_train_is_a_clear_error(model):
    model.requires_grad_(False)
    with pytest.raises(LoomComputeError, match="no trainable parameters"):
        build_optimizer(model, _config())
    apply_freeze(model, _config())


# ---- schedule -----------------------------------------------------------------------------------

schedules = st.sampled_from(["cosine", "linear", "constant"])


def _schedule_config(lr: float, warmup: float, min_ratio: float, schedule: str) -> RunConfig:
    return _with(_config(), lr=lr, warmup_fraction=warmup, min_lr_ratio=min_ratio, schedule=schedule)


@settings(max_examples=150, deadline=None)
@given(
    total=st.integers(2, 3000),
    lr=st.floats(1e-7, 1.0),
    warmup=st.floats(0.0, 1.0),
    min_ratio=st.floats(0.0, 1.0),
    schedule=schedules,
)
def test_schedule_properties(total, lr, warmup, min_ratio, schedule):
    config = _schedule_config(lr, warmup, min_ratio, schedule)
    values = [lr_at(s, total, config) for s in range(total)]
    w = warmup_steps(total, config)
    assert w == min(math.ceil(warmup * total), total - 1)
    assert all(v >= 0 for v in values)
    assert all(v <= lr * (1 + 1e-12) for v in values)
    peak_step = max(w - 1, 0)
    assert values[peak_step] == pytest.approx(lr, rel=1e-12)
    # Warmup: strictly increasing, linear from lr / W.
    assert all(a < b for a, b in itertools.pairwise(values[:w]))
    if w:
        assert values[0] == pytest.approx(lr / w, rel=1e-12)
    after = values[peak_step:]
    if schedule == "constant":
        assert all(v == pytest.approx(lr, rel=1e-12) for v in after)
    else:
        assert values[-1] == pytest.approx(lr * min_ratio, rel=1e-9, abs=1e-15)
        assert all(b <= a * (1 + 1e-12) for a, b in itertools.pairwise(after))
    # Past the end the schedule holds its final value.
    assert lr_at(total + 5, total, config) == pytest.approx(values[-1], rel=1e-12)


@pytest.mark.parametrize("total,warmup,min_ratio", [(10, 0.3, 0.1), (50, 0.03, 0.0), (7, 0.0, 0.5), (33, 0.5, 0.2)])
def test_decay_matches_torch_schedulers(total, warmup, min_ratio):
    lr = 1e-3
    for schedule in ("cosine", "linear"):
        config = _schedule_config(lr, warmup, min_ratio, schedule)
        peak_step = max(warmup_steps(total, config) - 1, 0)
        span = total - 1 - peak_step
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
        if schedule == "cosine":
            reference = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=span, eta_min=lr * min_ratio)
        else:
            reference = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1.0, end_factor=min_ratio, total_iters=span)
        for t in range(span + 1):
            assert lr_at(peak_step + t, total, config) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-6, abs=1e-15)
            opt.step()
            reference.step()


# Hand-computed values of the documented schedule (train/optim.py, docs/training.md): total 23,
# warmup_fraction 0.2 -> W = ceil(4.6) = 5 warmup steps, lr(s) = lr * (s + 1) / 5 for s < 5; the
# peak is step 4; decay over the 18 steps 4..22 to lr * 0.1 at step 22. Written out as numbers
# (cos(pi/2) = 0, cos(pi/3) = 1/2), not computed with lr_at.
HAND_LR, HAND_TOTAL, HAND_MIN = 1e-3, 23, 0.1
HAND = {
    "cosine": {0: 2e-4, 1: 4e-4, 3: 8e-4, 4: 1e-3,
               13: 1e-4 + 9e-4 * 0.5,            # halfway (9/18): cos(pi/2) = 0
               10: 1e-4 + 9e-4 * 0.75,           # a third of the way (6/18): (1 + cos(pi/3)) / 2
               22: 1e-4, 30: 1e-4},              # the last step, and past the end
    "linear": {0: 2e-4, 4: 1e-3, 13: 5.5e-4, 10: 7e-4, 22: 1e-4, 30: 1e-4},
    "constant": {0: 2e-4, 2: 6e-4, 4: 1e-3, 13: 1e-3, 22: 1e-3, 30: 1e-3},
}


@pytest.mark.parametrize("schedule", ["cosine", "linear", "constant"])
def test_lr_at_and_the_scheduler_give_the_hand_computed_schedule(model, schedule):
    config = _with(_config(), lr=HAND_LR, schedule=schedule, warmup_fraction=0.2, min_lr_ratio=HAND_MIN)
    expected = HAND[schedule]
    assert warmup_steps(HAND_TOTAL, config) == 5
    for step, value in expected.items():
        assert lr_at(step, HAND_TOTAL, config) == pytest.approx(value, rel=1e-12), step
    # The scheduler the trainer steps: the lr each optimizer step actually uses.
    apply_freeze(model, config)
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, HAND_TOTAL, config)
    used = []
    for _ in range(HAND_TOTAL):
        used.append(optimizer.param_groups[0]["lr"])
        assert all(g["lr"] == used[-1] for g in optimizer.param_groups)
        optimizer.step()  # no gradients: a no-op, keeps torch's step order
        scheduler.step()
    for step, value in expected.items():
        if step < HAND_TOTAL:
            assert used[step] == pytest.approx(value, rel=1e-12), step
    assert max(used) == pytest.approx(HAND_LR, rel=1e-12) and min(used) == pytest.approx(2e-4 if schedule == "constant" else 1e-4, rel=1e-12)
    after_peak = used[4:]
    assert all(b <= a for a, b in itertools.pairwise(after_peak))  # non-increasing after the warmup
    assert all(a < b for a, b in itertools.pairwise(used[:5]))  # strictly rising during it


@settings(max_examples=60, deadline=None)
@given(total=st.integers(2, 400), warmup=st.floats(0.0, 1.0), min_ratio=st.floats(0.0, 1.0), schedule=st.sampled_from(["cosine", "linear"]))
def test_scheduler_matches_the_documented_formula(total, warmup, min_ratio, schedule):
    """The formula of the docstring, written here independently (torch's own schedulers are the
    second reference above), against the lr torch's optimizer really holds at each step."""
    lr = 0.01
    config = _schedule_config(lr, warmup, min_ratio, schedule)
    w = min(math.ceil(warmup * total), total - 1)
    peak_step = max(w - 1, 0)

    def documented(s: int) -> float:
        if s < w:
            return lr * (s + 1) / w
        x = (s - peak_step) / (total - 1 - peak_step)
        shape = 1 - x if schedule == "linear" else (1 + math.cos(math.pi * x)) / 2
        return lr * min_ratio + (lr - lr * min_ratio) * shape

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = build_scheduler(optimizer, total, config)
    for s in range(total):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(documented(s), rel=1e-9, abs=1e-15), s
        optimizer.step()
        scheduler.step()


def test_one_step_run_and_bad_inputs():
    config = _config()
    assert lr_at(0, 1, config) == config.train.lr
    with pytest.raises(ValueError, match="total_steps"):
        lr_at(0, 0, config)
    with pytest.raises(ValueError, match="step"):
        lr_at(-1, 10, config)
    with pytest.raises(LoomComputeError, match="train.schedule"):
        lr_at(0, 10, _with(config, schedule="exponential"))


# ---- step arithmetic ----------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    micro=st.integers(1, 16),
    world=st.integers(1, 16),
    accumulation=st.integers(1, 16),
    sequences=st.integers(1, 100_000),
    epochs=st.sampled_from([1, 2, 3, 0.5, 0.1, 1.5]),
)
def test_steps_and_accumulation(micro, world, accumulation, sequences, epochs):
    global_batch = micro * world * accumulation
    config = _with(_config(), global_batch=global_batch, micro_batch=micro, epochs=epochs, max_steps=None)
    run = steps_per_run(sequences, config, world)
    assert run.accumulation == accumulation
    assert run.accumulation * micro * world == global_batch
    assert run.steps_per_epoch == len(range(0, sequences, global_batch))  # batches, the last one partial
    # Fractional epochs: the smallest step count that covers epochs * steps_per_epoch, checked exactly.
    assert run.optimizer_steps == math.ceil(Fraction(str(epochs)) * run.steps_per_epoch)
    capped = steps_per_run(sequences, _with(config, max_steps=7), world)
    assert capped.optimizer_steps == 7 and capped.accumulation == accumulation


@settings(max_examples=100, deadline=None)
@given(micro=st.integers(1, 16), world=st.integers(1, 16), global_batch=st.integers(1, 512))
def test_accumulation_must_divide(micro, world, global_batch):
    config = _with(_config(), global_batch=global_batch, micro_batch=micro)
    if global_batch % (micro * world) == 0:
        assert steps_per_run(100, config, world).accumulation == global_batch // (micro * world)
    else:
        with pytest.raises(LoomComputeError, match=rf"global_batch {global_batch} is not a multiple of train\.micro_batch {micro} x world size {world}"):
            steps_per_run(100, config, world)


def test_empty_run_is_a_clear_error():
    with pytest.raises(LoomComputeError, match="no optimizer steps"):
        steps_per_run(0, _config())
    assert steps_per_run(0, _with(_config(), max_steps=3)).optimizer_steps == 3


# ---- one real step ------------------------------------------------------------------------------


@pytest.mark.parametrize("vision_trainable", [False, True])
def test_one_step_moves_trained_parts_and_not_frozen_vision(vision_trainable):
    model = _model(seed=1).train()
    config = _trainable(_config(), vision_trainable)
    apply_freeze(model, config)
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, 10, config)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    loss, valid = model(_batch())
    (loss / valid).backward()
    optimizer.step()
    scheduler.step()
    after = dict(model.named_parameters())
    for name, old in before.items():
        new = after[name].detach()
        if name.startswith("vision.") and not vision_trainable:
            assert torch.equal(old, new), f"frozen {name} changed"
            assert after[name].grad is None
        elif name.startswith("projector."):
            assert not torch.equal(old, new), f"{name} did not move"
        elif after[name].grad is not None and after[name].grad.abs().sum() > 0:
            assert not torch.equal(old, new), f"{name} has a gradient but did not move"
    assert any(not torch.equal(before[n], after[n].detach()) for n in before if n.startswith("llm."))
    if vision_trainable:
        assert any(not torch.equal(before[n], after[n].detach()) for n in before if n.startswith("vision."))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fused_adamw_on_cuda():
    model = _model().cuda()
    apply_freeze(model, _config())
    optimizer = build_optimizer(model, _config())
    assert optimizer.defaults["fused"] is True
