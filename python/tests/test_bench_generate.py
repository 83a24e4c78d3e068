"""bench/generate.py --quick: Loom's generator and plain transformers generate run on the same tiny
weights, both report positive throughputs at batch 1 and 32, and their greedy tokens agree."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import pytest
from fixtures.modules import load_module

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def lines(tmp_path_factory):
    bench = load_module("bench_generate", REPO / "bench" / "generate.py")
    out = tmp_path_factory.mktemp("bench-generate") / "result.json"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        assert bench.main(["--quick", "--new-tokens", "8", "--json-out", str(out)]) == 0
    printed = [json.loads(line) for line in stdout.getvalue().splitlines() if line.strip()]
    assert printed == json.loads(out.read_text())
    assert "tokens/s" in stderr.getvalue()
    return printed


def test_quick_mode_compares_loom_with_transformers_at_batch_1_and_32(lines):
    head = lines[0]
    assert head["device"] == "cpu" and head["quick"] is True and head["new_tokens"] == 8
    runs = {(line["impl"], line["batch"]): line for line in lines if "impl" in line}
    assert set(runs) == {("loom", 1), ("hf", 1), ("loom", 32), ("hf", 32)}
    for line in runs.values():
        assert math.isfinite(line["tokens_per_s"]) and line["tokens_per_s"] > 0
        assert line["tokens_per_s"] == pytest.approx(line["batch"] * 8 / line["seconds"], rel=0.01)
    comparisons = {line["batch"]: line for line in lines if line.get("comparison")}
    assert set(comparisons) == {1, 32}
    for batch, line in comparisons.items():
        assert line["same_tokens"] is True, f"batch {batch}: greedy tokens differ from transformers'"
        expected = runs[("loom", batch)]["tokens_per_s"] / runs[("hf", batch)]["tokens_per_s"]
        assert line["ratios"]["loom/hf"] == pytest.approx(expected, rel=0.01)
