"""The `generate` and `chat` verbs as the CLI runs them: `python -m loom_compute ...` subprocesses
on a tiny export (fixtures/tiny_export.py), CPU."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fixtures.protocol_helpers import TESTS_DIR, WorkerRun, run_module, strict_json, worker_env

FIXTURE = TESTS_DIR / "fixtures" / "tiny_export.py"
LONG = " ".join(["word"] * 2200)  # past the tiny model's 2048 positions


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("infer") / "export"
    subprocess.run([sys.executable, str(FIXTURE), str(out)], check=True, capture_output=True, text=True)
    return out


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp_path = tmp_path_factory.mktemp("rows")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (50, 80, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    rows = [
        '{"id": "a", "image": "a.png", "prompt": "What is it?"}',
        '{"id": "b", "image": null, "messages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}, {"role": "user", "content": "more"}]}',
        '{"id": "c", "image": "missing.png", "prompt": "x"}',
        '{"id": "d", "image": "bad.jpg", "prompt": "x"}',
        "not json",
        "",
        '{"id": "e", "image": "a.png", "messages": [{"role": "assistant", "content": "x"}]}',
        json.dumps({"id": "f", "image": str(tmp_path / "a.png"), "prompt": "Tell me more about the <|im_end|> picture"}),
        json.dumps({"id": "g", "image": None, "prompt": LONG}),
        '{"id": "a", "image": null, "prompt": "a duplicate"}',
    ]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def generate(export: Path, inputs: Path, out: Path, *extra: str, env: dict | None = None) -> WorkerRun:
    return run_module("loom_compute", "generate", "--model", str(export), "--input", str(inputs), "--out", str(out),
                      "--max-new-tokens", "4", "--batch-size", "3", *extra, env=env, timeout=300)


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


GOOD = ["a", "b", "f"]
BAD = {"c": "no such image file", "d": "cannot decode the image", "#5": "not JSON", "e": "no user message",
       "g": "max_position_embeddings", "a": "duplicate id"}


@pytest.fixture(scope="module")
def first_run(export: Path, inputs: Path) -> tuple[Path, WorkerRun]:
    out = inputs.parent / "out.jsonl"
    return out, generate(export, inputs, out)


def test_generate_answers_good_rows_and_records_bad_ones(inputs: Path, first_run: tuple[Path, WorkerRun]) -> None:
    out, run = first_run
    assert run.returncode == 0, run.stderr
    done = run.events[-1]
    assert done["event"] == "done"
    assert done["answered"] == 3 and done["bad_rows"] == 6 and done["skipped_existing"] == 0
    assert done["new_tokens"] == 12 and done["tokens_per_s"] > 0
    got = records(out)
    assert [r["id"] for r in got] == ["a", "b", "c", "d", "#5", "e", "f", "g"], "input order, one record per id"
    for r in got:
        if r["id"] in GOOD:
            assert set(r) == {"id", "answer", "finish_reason", "new_tokens"}
            assert r["finish_reason"] == "length" and r["new_tokens"] == 4
        else:
            assert BAD[r["id"]] in r["error"], r
    assert not list(inputs.parent.glob("out.jsonl.part-*"))
    assert [e["done"] for e in run.only("progress")] == [3, 6, 9]  # 9 non-blank rows in batches of 3


def test_generate_answers_match_the_in_process_generator(export: Path, inputs: Path, first_run: tuple[Path, WorkerRun]) -> None:
    from loom_compute.infer.generate import SamplingParams
    from loom_compute.infer.loading import InferenceModel
    from loom_compute.infer.prompts import parse_messages

    out, run = first_run
    assert run.returncode == 0
    runner = InferenceModel.load(export, device="cpu")
    request = runner.request(parse_messages([{"role": "user", "content": "What is it?"}]), inputs.parent / "a.png")
    (expected,) = runner.generator.generate([request], SamplingParams(max_new_tokens=4))
    first = records(out)[0]
    assert first["answer"] == expected.text and first["new_tokens"] == expected.new_tokens


def test_a_rerun_skips_answered_ids_and_repairs_a_torn_part_file(export: Path, inputs: Path, first_run: tuple[Path, WorkerRun]) -> None:
    full = records(first_run[0])
    out = inputs.parent / "resumed.jsonl"
    # As after a kill -9: OUT lost "f", a part file holds "b" and a torn half line.
    kept = [r for r in full if r["id"] not in ("b", "f")]
    out.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
    part = inputs.parent / "resumed.jsonl.part-0"
    b = next(r for r in full if r["id"] == "b")
    part.write_text(json.dumps(b) + "\n" + '{"id": "f", "answ', encoding="utf-8")
    run = generate(export, inputs, out)
    assert run.returncode == 0, run.stderr
    done = run.events[-1]
    # a, b and a's duplicate row are skipped (their id has an answer); f is redone; bad rows are retried.
    assert done["skipped_existing"] == 3 and done["answered"] == 1
    assert done["bad_rows"] == 5
    assert records(out) == full
    assert not part.exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ranks_split_rows_by_index_and_rank_0_merges(export: Path, inputs: Path, first_run: tuple[Path, WorkerRun]) -> None:
    out = inputs.parent / "two-ranks.jsonl"
    port = str(_free_port())
    procs = []
    for rank in (0, 1):
        env = worker_env(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "loom_compute", "generate", "--model", str(export), "--input", str(inputs), "--out", str(out),
             "--max-new-tokens", "4", "--batch-size", "2", "--device", "cpu"],
            cwd=TESTS_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs[0][1] + outputs[1][1]
    assert outputs[1][0] == "", "only rank 0 emits events"
    done = [strict_json(line) for line in outputs[0][0].splitlines()][-1]
    assert done["answered"] == 3 and done["bad_rows"] == 6
    assert [r["id"] for r in records(out)] == ["a", "b", "c", "d", "#5", "e", "f", "g"]
    assert records(out) == records(first_run[0])


def chat(export: Path, lines: list[str], *extra: str) -> WorkerRun:
    proc = subprocess.run(
        [sys.executable, "-m", "loom_compute", "chat", "--model", str(export), "--max-new-tokens", "5", *extra],
        cwd=TESTS_DIR, env=worker_env(), input="".join(line + "\n" for line in lines), capture_output=True, text=True, timeout=300,
    )
    return WorkerRun(proc.returncode, proc.stdout, proc.stderr)


def test_chat_streams_answers_and_survives_bad_requests(export: Path, inputs: Path) -> None:
    image = str(inputs.parent / "a.png")
    ask = {"messages": [{"role": "user", "content": "What is it?"}], "image": image}
    follow = {"messages": [{"role": "user", "content": "What is it?"}, {"role": "assistant", "content": "A thing."},
                           {"role": "user", "content": "Sure?"}], "image": image}
    run = chat(export, [json.dumps(ask), "{not json", json.dumps({"messages": [], "image": None}),
                        json.dumps({"messages": ask["messages"], "image": "/no/such.png"}),
                        json.dumps({"messages": [{"role": "user", "content": LONG}], "image": None}), "", json.dumps(follow)])
    assert run.returncode == 0, run.stderr
    events = run.events
    assert events[0] == {"event": "ready", "model": str(export), "prompt_format": "chatml", "stage": "sft"}
    answers = run.only("answer")
    assert len(answers) == 6
    assert [("error" in a) for a in answers] == [False, True, True, True, True, False]
    assert "not JSON" in answers[1]["error"] and "no such image" in answers[3]["error"]
    assert "max_position_embeddings" in answers[4]["error"]
    # Each answer's token events add up to its text.
    text, streamed = [], ""
    for e in events[1:]:
        if e["event"] == "token":
            streamed += e["text"]
        elif e["event"] == "answer":
            text.append((streamed, e))
            streamed = ""
    for pieces, answer in text:
        if "error" not in answer:
            assert pieces == answer["text"]
            assert answer["new_tokens"] == 5 and answer["finish_reason"] == "length" and answer["seconds"] > 0
    assert events[-1] == {"event": "done", "answers": 2, "errors": 4}


def test_chat_refuses_a_folder_that_is_not_an_export(tmp_path: Path) -> None:
    run = chat(tmp_path, [])
    assert run.returncode == 1
    assert "no loom.json" in run.events[-1]["msg"]


def test_bad_sampling_flags_are_usage_errors(export: Path, inputs: Path) -> None:
    run = generate(export, inputs, inputs.parent / "never.jsonl", "--top-p", "0")
    assert run.returncode == 2
    assert "--top-p must be in (0, 1]" in run.events[-1]["msg"]
    assert not (inputs.parent / "never.jsonl").exists()


def test_a_pretrained_export_continues_a_caption(tmp_path: Path, inputs: Path) -> None:
    """A pre-training export's loom.json says "caption": the prompt is the pre-training template up
    to {caption}, and the model continues the user's text after the image."""
    import copy

    import torch

    from loom_compute.config import parse_run_config
    from loom_compute.infer.generate import SamplingParams
    from loom_compute.infer.loading import InferenceModel
    from loom_compute.infer.prompts import parse_messages
    from loom_compute.model.builder import build_model
    from loom_compute.train.distributed import DistContext
    from loom_compute.train.export import export_model

    repo = TESTS_DIR.parents[1]
    config = copy.deepcopy(json.loads((repo / "vectors" / "config" / "valid" / "tiny-pretrain.json").read_text())["config"])
    config["tokenizer"]["path"] = str(repo / "assets" / "tokenizer" / "tiny" / "tokenizer.json")
    config["train"]["attention"] = "sdpa"
    run_config = parse_run_config(config)
    torch.manual_seed(0)
    ctx = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), backend="gloo", mesh=None)  # type: ignore[arg-type]
    export_model(build_model(run_config).eval(), tmp_path / "export", run_config, step=0, ctx=ctx)
    runner = InferenceModel.load(tmp_path / "export", device="cpu")
    assert runner.describe()["prompt_format"] == "caption" and runner.info.stage == "pretrain"
    request = runner.request(parse_messages([{"role": "user", "content": "A red"}]), inputs.parent / "a.png")
    grid = runner.info.image_grid
    image_id = runner.renderer.image_token_id
    newline = runner.tokenizer.encode("\n", add_special_tokens=False).ids
    assert request.ids == [image_id] * grid * grid + newline + runner.tokenizer.encode("A red", add_special_tokens=False).ids
    (result,) = runner.generator.generate([request], SamplingParams(max_new_tokens=3))
    assert result.new_tokens >= 1 and result.finish_reason in ("stop", "length")


def test_a_second_run_on_the_same_output_is_refused_and_a_dead_runs_lock_taken_over(export: Path, inputs: Path) -> None:
    from loom_compute.locks import _start_time

    out = inputs.parent / "locked.jsonl"
    lock = inputs.parent / "locked.jsonl.part-0.lock"
    # A live holder on this host: this test process itself.
    lock.write_text(json.dumps({"pid": os.getpid(), "start": _start_time(os.getpid()), "host": socket.gethostname()}))
    run = generate(export, inputs, out)
    assert run.returncode == 1 and not out.exists()
    assert "another run" in run.events[-1]["msg"] and str(os.getpid()) in run.events[-1]["msg"]
    # The same pid with another start time is a reused pid: the holder is dead.
    lock.write_text(json.dumps({"pid": os.getpid(), "start": "1", "host": socket.gethostname()}))
    run = generate(export, inputs, out)
    assert run.returncode == 0, run.stderr
    assert not lock.exists() and {r["id"] for r in records(out)} >= set(GOOD)
