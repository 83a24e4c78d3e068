"""The per-shard job runner: shards are the unit of work, split over ranks, each written once.

At start every rank lists the shards whose sidecar does not exist yet (the pending list) and
takes those at positions `i % WORLD_SIZE == RANK` of it, so a relaunch with another number of
ranks finishes exactly what is left. Under torchrun (MASTER_ADDR set) the ranks meet at a
barrier after listing, so no rank sees a sidecar another rank of the same launch wrote; started
by hand with only RANK/WORLD_SIZE set, the ranks must start together (a shard finished before
another rank listed would shift its list; the summary then reports what is left to relaunch).

A shard's sidecar is written to a temporary sibling and renamed. Before a rank scores a shard it
deletes that shard's temporary files: only a dead run can have left them, since within a launch
each shard belongs to one rank. Rank 0 reports progress (samples and samples/s) and the summary.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from loom_compute import protocol
from loom_compute.curate.shards import BadSample, GoodSample, read_shard
from loom_compute.curate.sidecar import (
    check_scorer_name,
    read_sidecar_meta,
    shard_stem,
    sidecar_path,
    temp_files_of,
    write_sidecar,
)
from loom_compute.errors import LoomComputeError, UsageError

PREFETCH_BATCHES = 2
MAX_DECODE_WORKERS = 8


def default_decode_workers() -> int:
    """Image-decoding threads per rank: its share of this machine's CPUs, less one for the prefetch
    thread, at most 8 (one thread cannot feed a GPU scoring a ViT-H at batch 256); none when that
    is a single thread, which costs more in hand-offs than it overlaps (measured: 384 px JPEGs on 2
    cores, 836 samples/s read serially, 694 with one decode thread, 1,048 with two)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    ranks_here = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    workers = min(MAX_DECODE_WORKERS, cpus // ranks_here - 1)
    return workers if workers >= 2 else 0


class BatchScorer(Protocol):
    """What the runner needs of a scorer: CPU-side preprocessing and the model's scores."""

    source: str
    batch_size: int
    columns: Sequence[str]

    def preprocess(self, images: Sequence[Any], captions: Sequence[str]) -> Any: ...

    def score_inputs(self, inputs: Any) -> dict[str, np.ndarray] | np.ndarray: ...


def list_shards(inputs: Sequence[str | Path]) -> list[Path]:
    """Shards named by `inputs`: files as given, directories' `*.tar` (not recursive) sorted by name."""
    shards: list[Path] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.glob("*.tar") if p.is_file() and not p.name.startswith("."))
            if not found:
                raise UsageError(f"{path}: no *.tar shards in this directory")
            shards.extend(found)
        elif path.is_file():
            shards.append(path)
        else:
            raise UsageError(f"{path}: no such shard file or directory")
    stems: dict[str, Path] = {}
    for shard in shards:
        other = stems.setdefault(shard_stem(shard), shard)
        if other != shard:
            raise UsageError(f"{other} and {shard} have the same name, so their score sidecars would collide; score them into different --out directories")
    return shards


def pending_shards(shards: Sequence[Path], out_dir: Path, scorer_name: str) -> list[Path]:
    return [shard for shard in shards if not sidecar_path(out_dir, shard, scorer_name).exists()]


def share_of(pending: Sequence[Path], rank: int, world: int) -> list[Path]:
    return [shard for index, shard in enumerate(pending) if index % world == rank]


def remove_stale_temps(out_dir: Path, shard: Path, scorer_name: str) -> int:
    removed = 0
    for temp in temp_files_of(sidecar_path(out_dir, shard, scorer_name)):
        temp.unlink(missing_ok=True)
        removed += 1
    return removed


@dataclass
class _Batch:
    uids: list[str]
    keys: list[str]
    inputs: Any
    bad: list[BadSample] = field(default_factory=list)


def _batches(shard: Path, scorer: BatchScorer, decode_workers: int) -> Iterator[_Batch]:
    """The shard's good samples in batches, preprocessed; bad samples ride with the next batch."""
    uids: list[str] = []
    keys: list[str] = []
    images: list[Any] = []
    captions: list[str] = []
    bad: list[BadSample] = []
    for item in read_shard(shard, decode_workers=decode_workers):
        if isinstance(item, BadSample):
            bad.append(item)
            continue
        assert isinstance(item, GoodSample)
        uids.append(item.uid)
        keys.append(item.key)
        images.append(item.image)
        captions.append(item.caption)
        if len(uids) == scorer.batch_size:
            yield _Batch(uids, keys, scorer.preprocess(images, captions), bad)
            uids, keys, images, captions, bad = [], [], [], [], []
    if uids or bad:
        yield _Batch(uids, keys, scorer.preprocess(images, captions) if uids else None, bad)


def _prefetched(source: Iterator[_Batch]) -> Iterator[_Batch]:
    """Runs `source` (decode + preprocessing) in a thread, a few batches ahead of the model."""
    slots: queue.Queue[Any] = queue.Queue(maxsize=PREFETCH_BATCHES)
    finished = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for batch in source:
                while not stop.is_set():
                    try:
                        slots.put(batch, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put(finished)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            slots.put(exc)

    thread = threading.Thread(target=produce, name="loom-curate-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = slots.get()
            if item is finished:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


def _as_columns(scores: dict[str, np.ndarray] | np.ndarray, columns: Sequence[str]) -> dict[str, np.ndarray]:
    if isinstance(scores, dict):
        return scores
    return {columns[0]: scores}


def score_shard(
    shard: Path,
    out_dir: Path,
    scorer_name: str,
    scorer: BatchScorer,
    on_batch: Callable[[int], None] = lambda n: None,
    decode_workers: int = 0,
) -> dict[str, Any]:
    """Scores one shard and writes its sidecar atomically; returns the sidecar's metadata."""
    uids: list[str] = []
    keys: list[str] = []
    parts: dict[str, list[np.ndarray]] = {name: [] for name in scorer.columns}
    bad_by_reason: Counter[str] = Counter()
    for batch in _prefetched(_batches(shard, scorer, decode_workers)):
        for item in batch.bad:
            bad_by_reason[item.reason] += 1
            protocol.log("warning", f"{shard}: {'key ' + item.key if item.key is not None else 'file'}: {item.reason}: {item.detail}")
        if not batch.uids:
            on_batch(len(batch.bad))
            continue
        scores = _as_columns(scorer.score_inputs(batch.inputs), scorer.columns)
        for name in scorer.columns:
            values = np.asarray(scores[name], dtype=np.float32)
            if values.shape != (len(batch.uids),):
                raise LoomComputeError(f"scorer returned {values.shape} values of {name} for a batch of {len(batch.uids)}")
            parts[name].append(values)
        uids.extend(batch.uids)
        keys.extend(batch.keys)
        on_batch(len(batch.uids) + len(batch.bad))
    columns = {name: np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32) for name, chunks in parts.items()}
    return write_sidecar(
        sidecar_path(out_dir, shard, scorer_name),
        uids=uids,
        keys=keys,
        scores=columns,
        scorer=scorer_name,
        model=scorer.source,
        shard=shard.name,
        bad_by_reason=bad_by_reason,
    )


class _Ranks:
    """A barrier across the launch's ranks when torchrun's rendezvous variables are set."""

    def __init__(self, rank: int, world: int) -> None:
        self.rank, self.world = rank, world
        self.group = False
        if world > 1 and os.environ.get("MASTER_ADDR") and os.environ.get("MASTER_PORT"):
            import torch.distributed as dist

            if not dist.is_initialized():
                dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(hours=12))
                self.group = True
        elif world > 1:
            protocol.log("warning", "RANK/WORLD_SIZE are set without MASTER_ADDR/MASTER_PORT: the ranks cannot meet, so start them together (or use torchrun)")

    @property
    def synchronised(self) -> bool:
        import torch.distributed as dist

        return self.world == 1 or (dist.is_available() and dist.is_initialized())

    def barrier(self) -> None:
        if self.world > 1 and self.synchronised:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.group:
            import torch.distributed as dist

            dist.destroy_process_group()


def _expected_samples(shards: Sequence[Path]) -> int | None:
    """Sum of the samples the shards' advisory `_stats.json` say they hold, or None when one is missing.
    Progress counts good and bad samples, so it reaches this total on an intact shard."""
    total = 0
    for shard in shards:
        stats = shard.with_name(shard_stem(shard) + "_stats.json")
        try:
            data = json.loads(stats.read_text("utf-8"))
            total += int(data["loom"]["samples"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
    return total


def run_scoring(
    shard_inputs: Sequence[str | Path],
    out_dir: str | Path,
    scorer_name: str,
    make_scorer: Callable[[], BatchScorer],
    decode_workers: int | None = None,
) -> dict[str, Any]:
    """Scores every pending shard of this rank's share; returns the launch's summary (rank 0's view).
    `decode_workers`: image-decoding threads (default `default_decode_workers()`; 0 decodes in the
    prefetch thread)."""
    workers = default_decode_workers() if decode_workers is None else decode_workers
    check_scorer_name(scorer_name)
    out = Path(out_dir)
    shards = list_shards(shard_inputs)
    rank, world = protocol.process_rank(), protocol.world_size()
    if rank >= world:
        raise UsageError(f"RANK {rank} is not below WORLD_SIZE {world}")
    out.mkdir(parents=True, exist_ok=True)
    ranks = _Ranks(rank, world)
    try:
        pending = pending_shards(shards, out, scorer_name)
        ranks.barrier()  # every rank has listed before any writes
        mine = share_of(pending, rank, world)
        if rank == 0:
            for shard in shards:
                if shard not in pending:
                    remove_stale_temps(out, shard, scorer_name)
        protocol.log("info", f"{len(shards)} shard(s), {len(shards) - len(pending)} already scored, {len(pending)} pending over {world} rank(s); this rank takes {len(mine)}")
        launched = time.perf_counter()
        done_samples = 0
        expected = _expected_samples(mine)
        scorer = make_scorer() if mine else None
        started = time.perf_counter()  # throughput counts scoring, not imports and model loading
        load_seconds = started - launched

        def tick(n: int) -> None:
            nonlocal done_samples
            done_samples += n
            elapsed = max(time.perf_counter() - started, 1e-9)
            protocol.progress(done_samples, expected, unit="samples", samples_per_s=round(done_samples / elapsed, 2), shards_done=shards_done, shards_total=len(mine))

        shards_done = 0
        for shard in mine:
            target = sidecar_path(out, shard, scorer_name)
            if target.exists():  # finished by a rank of an unsynchronised launch
                continue
            remove_stale_temps(out, shard, scorer_name)
            assert scorer is not None
            score_shard(shard, out, scorer_name, scorer, tick, decode_workers=workers)
            shards_done += 1
        own_seconds = time.perf_counter() - started
        ranks.barrier()  # every rank's sidecars are written before rank 0 sums them
        seconds = time.perf_counter() - started
        summary = _summary(out, scorer_name, shards, pending, mine, world, ranks.synchronised, seconds, own_seconds, done_samples)
        return {**summary, "load_seconds": round(load_seconds, 3), "decode_workers": workers}
    finally:
        ranks.close()


def _summary(
    out: Path,
    scorer_name: str,
    shards: Sequence[Path],
    pending: Sequence[Path],
    mine: Sequence[Path],
    world: int,
    synchronised: bool,
    seconds: float,
    own_seconds: float,
    own_samples: int,
) -> dict[str, Any]:
    counted = pending if synchronised else mine
    samples = 0
    bad_by_reason: Counter[str] = Counter()
    scored = 0
    for shard in counted:
        path = sidecar_path(out, shard, scorer_name)
        if not path.exists():
            continue
        meta = read_sidecar_meta(path)
        scored += 1
        samples += int(meta["samples"])
        bad_by_reason.update({reason: int(n) for reason, n in meta["bad_by_reason"].items()})
    left = len(pending_shards(shards, out, scorer_name))
    return {
        "out": str(out),
        "scorer": scorer_name,
        "shards": len(shards),
        "shards_scored": scored,
        "shards_skipped": len(shards) - len(pending),
        "shards_left": left,
        "samples": samples,
        "bad": int(sum(bad_by_reason.values())),
        "bad_by_reason": dict(sorted(bad_by_reason.items())),
        "ranks": world,
        "counts_cover": "all ranks" if synchronised else "rank 0 only",
        "seconds": round(seconds, 3),
        "samples_per_s": round(samples / seconds, 2) if seconds > 0 and samples else 0.0,
        "rank0_samples_per_s": round(own_samples / own_seconds, 2) if own_seconds > 0 and own_samples else 0.0,
    }
