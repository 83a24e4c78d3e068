"""bench/train_step.py: a tiny CPU smoke run, and the claim that it trains what the HF reference trains.

The equivalence checks import the reference script itself (../shared/bench/hf_reference_step.py)
and compare its model configs and its packed batches with the bench's, draw for draw.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fixtures.modules import load_module

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench" / "train_step.py"
REFERENCE = REPO.parent / "shared" / "bench" / "hf_reference_step.py"


@pytest.fixture(scope="module")
def bench():
    return load_module("bench_train_step", BENCH)


@pytest.fixture(scope="module")
def reference():
    if not REFERENCE.is_file():
        pytest.skip(f"no reference script at {REFERENCE}")
    return load_module("hf_reference_step", REFERENCE)


def test_tiny_run_reports_positive_throughput_and_finite_loss(tmp_path):
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--tiny", "--steps", "1", "--warmup", "0", "--packed-rows", "1",
         "--seq-len", "256", "--skip-reference", "--json-out", str(out)],
        check=False, capture_output=True, text=True, timeout=240, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    device, loom, comparison = lines
    assert device["device"] == ("cpu" if not torch.cuda.is_available() else torch.cuda.get_device_name())
    assert loom["impl"] == "loom"
    assert loom["useful_tokens_per_s"] > 0 and loom["images_per_s"] > 0 and loom["step_s"] > 0
    assert math.isfinite(loom["loss"]) and loom["loss"] > 0
    # random weights over a 1000-word vocabulary: the loss starts near ln(1000)
    assert abs(loom["loss"] - math.log(1000)) < 1.0
    assert 0 < loom["useful_tokens_per_step"] <= 256
    assert comparison["ratio_useful_tokens_per_s"] is None  # no reference was run
    assert "loom" in proc.stderr and "useful tok/s" in proc.stderr
    written = json.loads(out.read_text())
    assert written["loom"] == loom and written["reference"] is None


@pytest.mark.parametrize("tiny", [True, False])
def test_model_sizes_match_the_reference(bench, reference, tiny):
    ref_vision, ref_llm, ref_pool = reference.configs(tiny)
    ours = bench.model_configs(tiny)
    vision, llm = bench.hf_configs(ours, "sdpa")
    assert ours["image_grid"] == ref_pool
    # every field, defaults included (attention is not part of to_dict)
    assert vision.to_dict() == ref_vision.to_dict()
    assert llm.to_dict() == ref_llm.to_dict()
    assert ours["image_token_id"] < llm.vocab_size and ours["pad_id"] != ours["image_token_id"]


@pytest.mark.parametrize("tiny,rows,seq_len", [(True, 2, 256), (True, 3, 1024), (False, 1, 4096)])
def test_batches_are_the_reference_batches(bench, reference, tiny, rows, seq_len):
    cfg = bench.model_configs(tiny)
    tpi = cfg["image_grid"] ** 2
    vocab, size = cfg["llm"]["vocab_size"], cfg["vision"]["image_size"]
    ours = bench.make_batches(cfg, rows, seq_len)
    gen = torch.Generator().manual_seed(1)
    theirs = [reference.make_batch("packed", rows, seq_len, tpi, vocab, size, "cpu", gen) for _ in range(3)]
    for batch, ((ids, image_mask, pixels, labels, attn), useful, n_images) in zip(ours, theirs):
        assert int(batch["attention_mask"].sum()) == useful
        assert torch.equal(batch["attention_mask"], attn)
        assert batch["pixel_values"].shape[0] == n_images == int(batch["images_per_row"].sum())
        assert torch.equal(batch["input_ids"] == cfg["image_token_id"], image_mask)
        # the same labelled predictions (HF shifts inside its loss; Loom's labels are unshifted too)
        assert torch.equal(batch["labels"][:, 1:], labels[:, 1:])
        text = (attn == 1) & ~image_mask
        same_text = batch["input_ids"][text] == ids[text]
        assert same_text.float().mean() > 0.99  # only ids colliding with the image placeholder are remapped
        # pixels: the reference's values clipped to [-1, 1], up to uint8 quantisation
        assert torch.allclose(batch["pixel_values"], pixels.float().clamp(-1, 1), atol=1 / 255 + 1e-2)
        # Loom isolates each image-caption pair: one segment per document, positions restart at 0
        starts = (batch["position_ids"] == 0) & (batch["attention_mask"] == 1)
        assert int(starts.sum()) == n_images
