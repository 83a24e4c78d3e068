"""The training loader over packed shards: split across ranks and DataLoader workers, shuffled
deterministically, resumable exactly.

How the stream is made (everything is a pure function of seed, epoch, rank and worker):

1. **Epoch order.** The shards are permuted by (seed, epoch) and their sequences laid end to end:
   global positions 0..N-1 (N from the shard headers, read once at construction).
2. **Split.** There are ``world_size * num_workers`` slots; slot ``rank * num_workers + worker``
   takes the contiguous range ``[s*N//P, (s+1)*N//P)``. Every sequence goes to exactly one slot,
   slots differ by at most one sequence, and with many shards a slot reads whole shards except at
   its two ends (a range that starts inside a shard seeks past the rest: tar headers only). One
   shard, or fewer shards than slots, works the same way.
3. **Shuffle buffer.** Each slot runs its range through a shuffle buffer of ``shuffle_buffer``
   sequences, seeded by (seed, epoch, rank, worker). The buffer works on positions, so the whole
   order of a slot is known up front; the reader holds at most about ``shuffle_buffer`` raw
   (undecoded) sequences and decodes each one as it is emitted.
4. **Batches.** Each worker collates ``micro_batch`` consecutive sequences of its order
   (``collate_packed``); its last batch may be smaller. The DataLoader takes one batch from each
   worker in turn (worker 0, 1, ..., skipping exhausted workers).

**Resume.** ``PackedLoader`` counts the batches it has handed out per worker and which worker comes
next; that is its ``state_dict``. A restored loader makes each worker skip the batches it had
already given (the skipped sequences are not decoded) and rotates the workers' roles so that the
DataLoader's first worker plays the one that was next: the stream after a restore equals the
uninterrupted stream exactly. The state refuses to load into a loader with a different split
(world size, workers, micro batch, seed, buffer, shards).

Random numbers come from a counter-based splitmix64 hash, not numpy's or Python's generators, so
the stream does not change with library versions.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from loom_compute.data.packed import (
    CHECKED_FIELDS,
    OPTIONAL_FIELDS,
    PackedShardError,
    check_pack_meta,
    collate_packed,
    decode_packed_sequence,
    expectations,
    read_packed_members,
)
from loom_compute.config import RunConfig
from loom_compute.errors import LoomComputeError

STATE_VERSION = 1
_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
# Purposes mixed into the hash so the shard order and the buffers draw independent numbers.
_SHARD_ORDER, _BUFFER = 1, 2


# ---------------------------------------------------------------------------------------------
# deterministic randomness


def _mix(z: int) -> int:
    z = (z + _GOLDEN) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def stream_key(*parts: int) -> int:
    """A 64-bit key for one random stream, from any number of non-negative integers."""
    key = 0
    for part in parts:
        key = _mix(key ^ (int(part) & _MASK))
    return key


def uniform_below(key: int, count: int, bounds: np.ndarray | int) -> np.ndarray:
    """``count`` draws, draw t uniform in [0, bounds[t]): 53 random bits scaled, so the bias is
    below bounds / 2^53, nothing for buffer and shard counts."""
    with np.errstate(over="ignore"):
        z = (np.arange(1, count + 1, dtype=np.uint64) * np.uint64(_GOLDEN)) + np.uint64(key)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    unit = (z >> np.uint64(11)).astype(np.float64) * (2.0**-53)
    return np.minimum((unit * np.asarray(bounds, dtype=np.float64)).astype(np.int64), np.asarray(bounds, dtype=np.int64) - 1)


def permutation(key: int, n: int) -> list[int]:
    """A Fisher-Yates permutation of range(n)."""
    order = list(range(n))
    if n < 2:
        return order
    draws = uniform_below(key, n - 1, np.arange(n, 1, -1)).tolist()
    for t, i in enumerate(range(n - 1, 0, -1)):
        j = draws[t]
        order[i], order[j] = order[j], order[i]
    return order


def shuffle_buffer_order(n: int, buffer: int, key: int) -> list[int]:
    """The order in which a shuffle buffer of ``buffer`` items emits the items 0..n-1 fed in order.

    Fill the buffer; then each new item replaces a uniformly chosen one, which is emitted; at the
    end the remainder is emitted in a random order. Item i is never emitted before item
    i - buffer has been, so a reader holds at most ``buffer + 1`` items.
    """
    if buffer <= 1 or n <= 1:
        return list(range(n))
    buffer = min(buffer, n)
    out: list[int] = []
    pool = list(range(buffer))
    draws = uniform_below(key, n - buffer, buffer).tolist()
    for t, item in enumerate(range(buffer, n)):
        j = draws[t]
        out.append(pool[j])
        pool[j] = item
    tail = permutation(stream_key(key, 0xFFFF), len(pool))
    out.extend(pool[i] for i in tail)
    return out


# ---------------------------------------------------------------------------------------------
# the split


def split_ranges(total: int, slots: int) -> list[tuple[int, int]]:
    """Slot s's contiguous share [s*total//slots, (s+1)*total//slots) of positions 0..total-1."""
    if slots <= 0:
        raise ValueError(f"split_ranges: slots must be positive, got {slots}")
    return [(s * total // slots, (s + 1) * total // slots) for s in range(slots)]


@dataclass(frozen=True)
class Segment:
    """Part of one shard inside a slot's range: sequences [start, stop) of shard ``shard``."""

    shard: int
    start: int
    stop: int


def slot_segments(counts: Sequence[int], shard_order: Sequence[int], begin: int, end: int) -> list[Segment]:
    """The shard pieces that make up positions [begin, end) of the order ``shard_order``."""
    segments = []
    at = 0
    for shard in shard_order:
        n = counts[shard]
        lo, hi = max(begin, at), min(end, at + n)
        if lo < hi:
            segments.append(Segment(shard, lo - at, hi - at))
        at += n
        if at >= end:
            break
    return segments


def default_rank_world() -> tuple[int, int]:
    """(rank, world size): torch.distributed when initialised, else RANK/WORLD_SIZE, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


# ---------------------------------------------------------------------------------------------
# the dataset


class PackedDataset(IterableDataset):
    """Collated micro-batches of packed sequences for one rank (module docstring: how).

    Use it with ``DataLoader(dataset, batch_size=None, num_workers=num_workers)``; ``PackedLoader``
    does that and adds the resumable position. Each batch is ``collate_packed``'s dict plus
    ``keys`` (``"{shard file stem}/{sequence key}"`` per row) and two bookkeeping entries,
    ``loader_worker`` and ``loader_batch`` (the worker's logical index and the batch's index in
    that worker's stream), which ``PackedLoader`` removes.
    """

    def __init__(
        self,
        shards: Sequence[str | Path],
        expect: Mapping[str, Any],
        *,
        image_mean: Sequence[float],
        image_std: Sequence[float],
        micro_batch: int,
        seed: int,
        shuffle_buffer: int = 64,
        num_workers: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        super().__init__()
        if not shards:
            raise PackedShardError("no packed shards given to the loader")
        if micro_batch < 1 or shuffle_buffer < 0 or num_workers < 0:
            raise ValueError(f"PackedDataset: micro_batch {micro_batch} must be >= 1, shuffle_buffer {shuffle_buffer} and num_workers {num_workers} >= 0")
        if rank is None or world_size is None:
            auto_rank, auto_world = default_rank_world()
            rank = auto_rank if rank is None else rank
            world_size = auto_world if world_size is None else world_size
        if not 0 <= rank < world_size:
            raise ValueError(f"PackedDataset: rank {rank} is not in [0, {world_size})")
        self.shards = [Path(p) for p in sorted(str(p) for p in shards)]
        # Every header is read and checked now, so a wrong shard stops the run before its first step.
        self.metas = [check_pack_meta(path, expect) for path in self.shards]
        first = self.metas[0]
        for path, meta in zip(self.shards, self.metas):
            for field in (*CHECKED_FIELDS, *OPTIONAL_FIELDS):
                if meta[field] != first[field]:
                    raise PackedShardError(
                        f"{path}: packed with {field} = {meta[field]!r} but {self.shards[0]} has {first[field]!r}; "
                        "one run reads shards of one packing",
                        field=field,
                    )
        self.counts = [int(meta["sequences"]) for meta in self.metas]
        self.seq_len = int(first["seq_len"])
        self.pad_id = int(first["pad_id"])
        self.image_mean = [float(x) for x in image_mean]
        self.image_std = [float(x) for x in image_std]
        self.micro_batch = int(micro_batch)
        self.seed = int(seed)
        self.shuffle_buffer = int(shuffle_buffer)
        self.num_workers = int(num_workers)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.epoch = 0
        self.skip_batches = [0] * self.workers
        self.rotation = 0

    @property
    def workers(self) -> int:
        """Logical workers per rank (1 when the DataLoader runs in the main process)."""
        return max(1, self.num_workers)

    @property
    def total_sequences(self) -> int:
        return sum(self.counts)

    def shard_order(self, epoch: int) -> list[int]:
        return permutation(stream_key(self.seed, epoch, _SHARD_ORDER), len(self.shards))

    def slot_range(self, worker: int) -> tuple[int, int]:
        """Global positions [begin, end) of this rank's logical worker (the same for every epoch)."""
        slots = self.world_size * self.workers
        return split_ranges(self.total_sequences, slots)[self.rank * self.workers + worker]

    def worker_batches(self, worker: int) -> int:
        begin, end = self.slot_range(worker)
        return -(-(end - begin) // self.micro_batch)

    def batches_per_epoch(self) -> int:
        """Batches this rank yields in a whole epoch."""
        return sum(self.worker_batches(w) for w in range(self.workers))

    def worker_order(self, epoch: int, worker: int) -> tuple[list[Segment], list[int]]:
        """A logical worker's shard pieces and the order (local positions) it emits them in."""
        begin, end = self.slot_range(worker)
        segments = slot_segments(self.counts, self.shard_order(epoch), begin, end)
        order = shuffle_buffer_order(end - begin, self.shuffle_buffer, stream_key(self.seed, epoch, _BUFFER, self.rank, worker))
        return segments, order

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        physical, count = (0, 1) if info is None else (info.id, info.num_workers)
        if count != self.workers:
            raise RuntimeError(f"PackedDataset was built for {self.workers} worker(s) but runs in a DataLoader with {count}")
        worker = (physical + self.rotation) % self.workers
        yield from self._batches(self.epoch, worker, self.skip_batches[worker])

    def _batches(self, epoch: int, worker: int, skip: int) -> Iterator[dict[str, Any]]:
        segments, order = self.worker_order(epoch, worker)
        batch_index = skip
        rows: list[dict[str, Any]] = []
        for sequence in self._sequences(segments, order[skip * self.micro_batch :]):
            rows.append(sequence)
            if len(rows) == self.micro_batch:
                yield self._collate(rows, worker, batch_index)
                rows, batch_index = [], batch_index + 1
        if rows:
            yield self._collate(rows, worker, batch_index)

    def _sequences(self, segments: list[Segment], emit: list[int]) -> Iterator[dict[str, Any]]:
        """Decoded sequences at the local positions ``emit``, in that order, reading the segments once."""
        needed = set(emit)
        pending: dict[int, tuple[Path, str, dict[str, bytes], Mapping[str, Any]]] = {}
        raw = self._raw(segments, needed)
        for position in emit:
            while position not in pending:
                got = next(raw, None)
                if got is None:
                    raise PackedShardError(f"sequence at position {position} of this worker's range was not found in its shards (shard changed?)")
                pending[got[0]] = got[1]
            path, key, parts, meta = pending.pop(position)
            sequence = decode_packed_sequence(path, key, parts, meta)
            sequence["key"] = f"{path.stem}/{key}"
            yield sequence

    def _raw(self, segments: list[Segment], needed: set[int]) -> Iterator[tuple[int, tuple[Path, str, dict[str, bytes], Mapping[str, Any]]]]:
        offset = 0
        for seg in segments:
            wanted = [seg.start + p - offset for p in range(offset, offset + seg.stop - seg.start) if p in needed]
            if wanted:
                path, meta = self.shards[seg.shard], self.metas[seg.shard]
                for ordinal, key, parts in read_packed_members(path, meta, wanted):
                    yield offset + ordinal - seg.start, (path, key, parts, meta)
            offset += seg.stop - seg.start

    def _collate(self, rows: list[dict[str, Any]], worker: int, batch_index: int) -> dict[str, Any]:
        batch = collate_packed(rows, self.seq_len, self.pad_id, self.image_mean, self.image_std)
        batch["keys"] = [row["key"] for row in rows]
        batch["loader_worker"] = worker
        batch["loader_batch"] = batch_index
        return batch


# ---------------------------------------------------------------------------------------------
# the resumable loader


class PackedLoader:
    """Owns a ``PackedDataset`` and its DataLoader; iterating yields the rest of the current epoch,
    then moves to the next epoch. ``state_dict()`` / ``load_state_dict()`` save and restore the
    exact position (batches already handed out count as consumed).
    """

    def __init__(self, dataset: PackedDataset, *, pin_memory: bool = False, prefetch_factor: int | None = None, epoch: int = 0) -> None:
        self.dataset = dataset
        self.pin_memory = pin_memory
        self.prefetch_factor = prefetch_factor
        self.epoch = epoch
        self.consumed = [0] * dataset.workers
        self.next_worker = 0

    @classmethod
    def for_run(
        cls,
        config: RunConfig,
        tokenizer_sha256: str,
        shards: Sequence[str | Path],
        *,
        num_workers: int = 0,
        shuffle_buffer: int = 64,
        rank: int | None = None,
        world_size: int | None = None,
        pin_memory: bool = False,
    ) -> PackedLoader:
        """A loader for a resolved run config: its expectations, micro batch, seed and image normalisation."""
        vision = config.model.vision
        dataset = PackedDataset(
            shards,
            expectations(config, tokenizer_sha256),
            image_mean=vision.image_mean,
            image_std=vision.image_std,
            micro_batch=config.train.micro_batch,
            seed=config.seed,
            shuffle_buffer=shuffle_buffer,
            num_workers=num_workers,
            rank=rank,
            world_size=world_size,
        )
        return cls(dataset, pin_memory=pin_memory)

    def __len__(self) -> int:
        """Batches this rank yields in a whole epoch (ranks differ by at most one when N is not divisible)."""
        return self.dataset.batches_per_epoch()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        ds = self.dataset
        ds.epoch = self.epoch
        ds.skip_batches = list(self.consumed)
        ds.rotation = self.next_worker
        if sum(self.consumed) < len(self):
            options: dict[str, Any] = {}
            if ds.num_workers > 0 and self.prefetch_factor is not None:
                options["prefetch_factor"] = self.prefetch_factor
            loader = DataLoader(ds, batch_size=None, num_workers=ds.num_workers, pin_memory=self.pin_memory, **options)
            for batch in loader:
                worker, index = batch.pop("loader_worker"), batch.pop("loader_batch")
                if index != self.consumed[worker]:
                    raise RuntimeError(f"loader: worker {worker} gave batch {index}, expected {self.consumed[worker]}")
                self.consumed[worker] += 1
                self.next_worker = (worker + 1) % ds.workers
                yield batch
        self.epoch += 1
        self.consumed = [0] * ds.workers
        self.next_worker = 0

    def state_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "epoch": self.epoch,
            "consumed_batches": list(self.consumed),
            "next_worker": self.next_worker,
            "split": self._split(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise LoomComputeError(f"loader state version {state.get('version')!r}, this loader reads version {STATE_VERSION}")
        mine = self._split()
        theirs = state.get("split", {})
        differ = [k for k in mine if theirs.get(k) != mine[k]]
        if differ:
            detail = "; ".join(f"{k}: saved {theirs.get(k)!r}, now {mine[k]!r}" for k in differ)
            raise LoomComputeError(f"loader state was saved with a different data split ({detail}); resume with the same settings")
        consumed = [int(c) for c in state["consumed_batches"]]
        limits = [self.dataset.worker_batches(w) for w in range(self.dataset.workers)]
        if len(consumed) != len(limits) or any(not 0 <= c <= n for c, n in zip(consumed, limits)):
            raise LoomComputeError(f"loader state consumed_batches {consumed} does not fit this split (at most {limits})")
        self.epoch = int(state["epoch"])
        self.consumed = consumed
        self.next_worker = int(state["next_worker"]) % self.dataset.workers

    def _split(self) -> dict[str, Any]:
        ds = self.dataset
        return {
            "world_size": ds.world_size,
            "rank": ds.rank,
            "workers": ds.workers,
            "micro_batch": ds.micro_batch,
            "seed": ds.seed,
            "shuffle_buffer": ds.shuffle_buffer,
            "shards": [p.name for p in ds.shards],
            "sequences": ds.counts,
        }
