"""The curation runner: shards split over ranks from the pending list, and the `score` verb killed
with SIGKILL after its first sidecar and relaunched under torchrun with 2 processes ends with the
same sidecars as an uninterrupted run, and no temporary files."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixtures.curate_data import synth_shards
from fixtures.curate_models import save_tiny_clip
from hypothesis import given, settings
from hypothesis import strategies as st
from loom_compute.curate.runner import list_shards, pending_shards, share_of
from loom_compute.curate.sidecar import sidecar_path, temp_path_for
from loom_compute.errors import UsageError

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


@given(
    shard_count=st.integers(0, 40),
    done=st.sets(st.integers(0, 39)),
    world=st.integers(1, 9),
)
@settings(max_examples=200, deadline=None)
def test_the_shares_of_the_pending_list_cover_it_once(shard_count: int, done: set[int], world: int) -> None:
    pending = [Path(f"{i:08d}.tar") for i in range(shard_count) if i not in done]
    shares = [share_of(pending, rank, world) for rank in range(world)]
    assert sorted(p for share in shares for p in share) == pending
    sizes = [len(share) for share in shares]
    assert max(sizes, default=0) - min(sizes, default=0) <= 1  # balanced


def test_pending_lists_the_shards_without_a_sidecar(tmp_path: Path) -> None:
    shards = [tmp_path / f"{i:08d}.tar" for i in range(5)]
    for shard in shards:
        shard.write_bytes(b"")
    out = tmp_path / "scores"
    out.mkdir()
    sidecar_path(out, shards[1], "clip").write_bytes(b"x")
    sidecar_path(out, shards[3], "dfn").write_bytes(b"x")  # another scorer's sidecar does not count
    temp_path_for(sidecar_path(out, shards[2], "clip")).write_bytes(b"partial")  # nor does a temp file
    assert pending_shards(list_shards([tmp_path]), out, "clip") == [shards[0], shards[2], shards[3], shards[4]]


def test_listing_rejects_missing_inputs_and_colliding_names(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such shard"):
        list_shards([tmp_path / "nope.tar"])
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "00000000.tar").write_bytes(b"")
    (tmp_path / "b" / "00000000.tar").write_bytes(b"")
    with pytest.raises(UsageError, match="same name"):
        list_shards([tmp_path / "a", tmp_path / "b"])
    with pytest.raises(UsageError, match="no \\*.tar"):
        list_shards([tmp_path / "c" if (tmp_path / "c").mkdir() is None else tmp_path])


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runner")
    return {"shards": synth_shards(root / "synth", samples=200, per_shard=50), "model": save_tiny_clip(root / "clip")}


def env(**extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    out["PYTHONPATH"] = str(REPO / "python" / "src")
    out["OMP_NUM_THREADS"] = "1"
    return {**out, **extra}


def verb_args(setup: dict[str, Path], out: Path) -> list[str]:
    return ["score", "--shards", str(setup["shards"]), "--out", str(out), "--scorer-name", "clip", "--model", str(setup["model"]), "--batch-size", "2"]


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_ranks(args: list[str], world: int) -> list[dict]:
    """The verb as `world` processes that meet through torch.distributed (as torchrun starts them)."""
    rendezvous = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": str(world)}
    procs = [
        subprocess.Popen([PYTHON, "-m", "loom_compute", *args], cwd=REPO, env=env(**rendezvous, RANK=str(rank), LOCAL_RANK=str(rank)),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for rank in range(world)
    ]
    outputs = [proc.communicate(timeout=240) for proc in procs]
    for proc, (_, stderr) in zip(procs, outputs):
        assert proc.returncode == 0, stderr[-4000:]
    assert all(stdout == "" for stdout, _ in outputs[1:]), "only rank 0 emits events"
    return events(outputs[0][0])


def in_process(setup: dict[str, Path], out: Path) -> dict:
    import torch
    from loom_compute.curate.clip_score import ClipScorer
    from loom_compute.curate.runner import run_scoring

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the subprocesses run (OMP_NUM_THREADS=1), so the floats agree bit for bit
    try:
        return run_scoring([setup["shards"]], out, "clip", lambda: ClipScorer(str(setup["model"]), device="cpu", batch_size=2))
    finally:
        torch.set_num_threads(threads)


def sidecars(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def test_killed_and_relaunched_with_two_ranks_equals_an_uninterrupted_run(setup: dict[str, Path], tmp_path: Path) -> None:
    whole = tmp_path / "whole"
    summary = in_process(setup, whole)
    assert summary["shards_scored"] == 4 and summary["samples"] == 200 and summary["shards_left"] == 0

    killed = tmp_path / "killed"
    proc = subprocess.Popen([PYTHON, "-m", "loom_compute", *verb_args(setup, killed)], cwd=REPO, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while not (killed.is_dir() and any(p.suffix == ".parquet" and not p.name.startswith(".") for p in killed.iterdir())):
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    finished = [p for p in killed.iterdir() if not p.name.startswith(".")]
    assert 1 <= len(finished) < 4, "the run finished before it could be killed mid-way"
    # what a kill inside the atomic write leaves: temp files of a pending and of a finished shard
    shards = sorted(setup["shards"].glob("*.tar"))
    for path in (temp_path_for(sidecar_path(killed, shards[3], "clip")), temp_path_for(sidecar_path(killed, shards[0], "clip"))):
        path.write_bytes(b"half a parquet file")

    relaunch = run_ranks(verb_args(setup, killed), world=2)
    summary = relaunch[-1]
    assert summary["event"] == "done", relaunch
    assert summary["ranks"] == 2 and summary["shards_skipped"] == len(finished) and summary["shards_scored"] == 4 - len(finished)
    assert summary["shards_left"] == 0 and summary["counts_cover"] == "all ranks"
    assert summary["samples"] == 50 * (4 - len(finished)) and summary["samples_per_s"] > 0
    progress = [e for e in relaunch if e["event"] == "progress"]
    assert progress and progress[-1]["done"] == progress[-1]["total"] and progress[-1]["samples_per_s"] > 0
    assert not [p for p in killed.iterdir() if p.name.startswith(".")], "temporary files remain"
    assert sidecars(killed) == sidecars(whole)

    again = in_process(setup, killed)
    assert again["shards_skipped"] == 4 and again["shards_scored"] == 0 and again["samples"] == 0


def test_a_bad_scorer_name_is_a_usage_error_event(tmp_path: Path, setup: dict[str, Path]) -> None:
    done = subprocess.run([PYTHON, "-m", "loom_compute", "score", "--shards", str(setup["shards"]), "--out", str(tmp_path / "s"),
                           "--scorer-name", "CLIP!", "--model", str(setup["model"])], cwd=REPO, env=env(), capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    error = events(done.stdout)[-1]
    assert error["event"] == "error" and "must match ^[a-z][a-z0-9_-]*$" in error["msg"]


@pytest.mark.parametrize(("cpus", "local_world", "expected"), [(2, 1, 0), (3, 1, 2), (16, 1, 8), (96, 8, 8), (16, 8, 0), (64, 8, 7)])
def test_decode_workers_default_to_a_share_of_the_cpus(monkeypatch: pytest.MonkeyPatch, cpus: int, local_world: int, expected: int) -> None:
    from loom_compute.curate.runner import default_decode_workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(local_world))
    assert default_decode_workers() == expected
