"""metrics.jsonl, the MFU formula, TensorBoard and the loss curve."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from loom_compute.config import RunConfig, parse_run_config
from loom_compute.model.builder import build_model
from loom_compute.train.metrics import MetricsLog, model_flops, parameter_counts, peak_tflops, plot_loss_curve, read_metrics
from loom_compute.train.optim import apply_freeze

ROOT = Path(__file__).resolve().parents[2]


def _config(vision_trainable: bool) -> RunConfig:
    config = json.loads((ROOT / "vectors" / "config" / "valid" / "tiny-pretrain.json").read_text())["config"]
    config["tokenizer"]["path"] = str(ROOT / config["tokenizer"]["path"])
    config["model"]["vision"]["trainable"] = vision_trainable
    return parse_run_config(config)


@pytest.mark.parametrize("vision_trainable", [False, True])
def test_model_flops_follow_the_stated_formula(vision_trainable):
    config = _config(vision_trainable)
    model = build_model(config)
    apply_freeze(model, config)
    counts = parameter_counts(model)
    # Independent count: named_parameters lists a tied tensor once.
    outside_vision = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("vision.") and p.requires_grad)
    vision = sum(p.numel() for p in model.vision.parameters())
    assert counts == {"trained": outside_vision, "vision": vision, "vision_trained": int(vision_trainable)}
    tokens, patches = 1000, 64 * 30
    k = 6 if vision_trainable else 2
    assert model_flops(counts, tokens, patches) == 6 * outside_vision * tokens + k * vision * patches


def test_peak_is_unknown_on_cpu_unless_overridden(monkeypatch):
    monkeypatch.delenv("LOOM_PEAK_TFLOPS", raising=False)
    assert peak_tflops(torch.device("cpu")) is None
    monkeypatch.setenv("LOOM_PEAK_TFLOPS", "123.5")
    assert peak_tflops(torch.device("cpu")) == 123.5


def _rows(steps):
    return [{"step": s, "loss": 5.0 - 0.1 * s, "lr": 1e-3, "grad_norm": 1.0, "mfu": None} for s in steps]


def test_resume_drops_lines_logged_after_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    log = MetricsLog(path, enabled=True, resume_step=None)
    for row in _rows(range(1, 6)):
        log.write(row)
    log.close()
    with open(path, "a") as handle:
        handle.write('{"step": 6, "loss"')  # cut by a crash
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3, 4, 5]

    log = MetricsLog(path, enabled=True, resume_step=3)
    log.write(_rows([4])[0])
    log.close()
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3, 4]
    fresh = MetricsLog(path, enabled=True, resume_step=None)
    fresh.close()
    assert read_metrics(path) == []


def test_disabled_log_on_other_ranks_writes_nothing(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl", enabled=False, resume_step=None)
    log.write(_rows([1])[0])
    log.close()
    assert not (tmp_path / "metrics.jsonl").exists()


def test_tensorboard_scalars_equal_the_jsonl_values(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = MetricsLog(tmp_path / "metrics.jsonl", enabled=True, resume_step=None, tensorboard_dir=tmp_path / "tb")
    rows = _rows(range(1, 4))
    for row in rows:
        log.write(row)
    log.close()
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert "train/mfu" not in events.Tags()["scalars"]  # null is not a number
    got = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert [s for s, _ in got] == [1, 2, 3]
    assert [v for _, v in got] == pytest.approx([r["loss"] for r in rows], rel=1e-6)


def test_loss_curve_is_a_png(tmp_path):
    out = plot_loss_curve(_rows(range(1, 80)), tmp_path / "loss.png", "run", reference={"unigram entropy": 4.1})
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob("*.tmp*"))
