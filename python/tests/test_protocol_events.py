"""The event emitter: format of each event, rank-0-only emission, JSON safety."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from loom_compute.protocol import Emitter, to_jsonable
from fixtures.protocol_helpers import strict_json


def lines(stream: io.StringIO) -> list[dict]:
    text = stream.getvalue()
    assert text.endswith("\n") or text == ""
    return [strict_json(line) for line in text.splitlines()]


def test_each_event_kind_has_the_documented_shape() -> None:
    out = io.StringIO()
    emitter = Emitter(out, rank=0)
    emitter.progress(3, 10, unit="shards")
    emitter.progress(4)
    emitter.metric(step=4, loss=0.25)
    emitter.log("warning", "disk almost full")
    emitter.done(kept=7)
    emitter.error("it broke", file="a.tar")
    assert lines(out) == [
        {"event": "progress", "done": 3, "total": 10, "unit": "shards"},
        {"event": "progress", "done": 4},
        {"event": "metric", "step": 4, "loss": 0.25},
        {"event": "log", "level": "warning", "msg": "disk almost full"},
        {"event": "done", "kept": 7},
        {"event": "error", "msg": "it broke", "file": "a.tar"},
    ]
    assert emitter.done_emitted and emitter.error_emitted


def test_every_event_is_one_flushed_line() -> None:
    class CountingStream(io.StringIO):
        flushes = 0

        def flush(self) -> None:
            self.flushes += 1
            super().flush()

    out = CountingStream()
    emitter = Emitter(out, rank=0)
    emitter.log("info", "two\nlines\r\nand a\u2028separator")
    emitter.metric(note="tab\there")
    assert out.flushes == 2
    assert out.getvalue().count("\n") == 2
    assert lines(out)[0]["msg"] == "two\nlines\r\nand a\u2028separator"


@pytest.mark.parametrize("rank", [1, 3, 7])
def test_only_rank_zero_emits(rank: int) -> None:
    out = io.StringIO()
    emitter = Emitter(out, rank=rank)
    emitter.progress(1, 2)
    emitter.metric(loss=1.0)
    emitter.log("info", "hello")
    emitter.done(x=1)
    emitter.error("bad")
    assert out.getvalue() == ""


def test_rank_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "2")
    assert Emitter(io.StringIO()).rank == 2
    monkeypatch.delenv("RANK")
    assert Emitter(io.StringIO()).rank == 0


def test_bad_arguments_are_refused() -> None:
    emitter = Emitter(io.StringIO(), rank=0)
    with pytest.raises(ValueError, match="reserved"):
        emitter.metric(event="x")
    with pytest.raises(ValueError, match="log level"):
        emitter.log("loud", "x")
    with pytest.raises(TypeError, match="done must be a number"):
        emitter.progress("3")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="total must be a number"):
        emitter.progress(3, True)


def test_numpy_torch_paths_and_non_finite_values_become_json() -> None:
    out = io.StringIO()
    emitter = Emitter(out, rank=0)
    from pathlib import Path

    emitter.metric(
        loss=torch.tensor(0.5),
        grads=torch.tensor([1.0, 2.0]),
        count=np.int64(7),
        ratio=np.float32(0.25),
        shape=np.array([[1, 2], [3, 4]]),
        path=Path("/tmp/x"),
        bad=[math.nan, math.inf, -math.inf],
    )
    emitter.progress(np.int64(5), torch.tensor(9))
    assert lines(out) == [
        {
            "event": "metric",
            "loss": 0.5,
            "grads": [1.0, 2.0],
            "count": 7,
            "ratio": 0.25,
            "shape": [[1, 2], [3, 4]],
            "path": "/tmp/x",
            "bad": ["NaN", "Infinity", "-Infinity"],
        },
        {"event": "progress", "done": 5, "total": 9},
    ]


def test_a_closed_reader_stops_events_without_failing_the_work() -> None:
    out = io.StringIO()
    emitter = Emitter(out, rank=0)
    out.close()
    emitter.progress(1, 2)  # would raise ValueError on a closed stream
    emitter.done(ok=True)
    assert emitter.done_emitted


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


def same_after_round_trip(original: object, parsed: object) -> bool:
    if isinstance(original, float):
        if math.isnan(original):
            return parsed == "NaN"
        if math.isinf(original):
            return parsed == ("Infinity" if original > 0 else "-Infinity")
        return parsed == original
    if isinstance(original, list):
        return isinstance(parsed, list) and len(parsed) == len(original) and all(map(same_after_round_trip, original, parsed))
    if isinstance(original, dict):
        return isinstance(parsed, dict) and parsed.keys() == original.keys() and all(same_after_round_trip(v, parsed[k]) for k, v in original.items())
    return parsed == original


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=10).filter(lambda k: k != "event"), json_values, max_size=5))
def test_any_metric_is_one_strict_json_line_that_round_trips(values: dict) -> None:
    out = io.StringIO()
    Emitter(out, rank=0).metric(**values)
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    assert text.isascii()  # escaped: no separator or surrogate can split or break the line
    event = strict_json(text)
    assert event.pop("event") == "metric"
    assert same_after_round_trip(values, event)


@given(json_values)
def test_to_jsonable_output_is_accepted_by_strict_json(value: object) -> None:
    json.dumps(to_jsonable(value), allow_nan=False)
