"""PackedLoader / PackedDataset over packed shards built with the stdlib: every sequence read once
across ranks and workers, exact resume, reshuffled epochs, refused shards, and the split's algebra."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fixtures.packed_builders import EXPECT, SEQ_LEN, SPEC, doc, write_shard
from loom_compute.data import (
    IGNORE_INDEX,
    PackedDataset,
    PackedLoader,
    PackedShardError,
    packed_shard_paths,
    read_pack_meta,
    read_packed_members,
    read_packed_shard,
    split_ranges,
)
from loom_compute.config import RunConfig, parse_run_config
from loom_compute.data.loader import shuffle_buffer_order, slot_segments
from loom_compute.errors import LoomComputeError

ROOT = Path(__file__).resolve().parents[2]
SHARD_SIZES = [3, 7, 1, 5, 4, 6]  # 26 sequences, uneven shards
MEAN, STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("packed")
    index = 0
    for number, size in enumerate(SHARD_SIZES):
        sequences = []
        for _ in range(size):
            docs = [doc(3 + (index * 7 + d * 5) % 11, index * 3 + d) for d in range(1 + index % 3)]
            sequences.append((f"{index:09d}", docs))
            index += 1
        # `loom pack`'s layout: shards in window folders (two here), next to files that are not shards.
        window = root / f"w{number // 4:06d}"
        window.mkdir(exist_ok=True)
        write_shard(window / f"{number:08d}.tar", sequences)
        (window / f"{number:08d}_pack.json").write_text("{}")
    (root / "w000000" / ".00000009.tar.tmp-123-0badc0de").write_bytes(b"half a shard")  # a killed writer's temp file
    (root / "w000000.done.json").write_text("{}")
    (root / "pack.json").write_text("{}")
    paths = packed_shard_paths(root)
    assert [f"{p.parent.name}/{p.name}" for p in paths] == [f"w{n // 4:06d}/{n:08d}.tar" for n in range(len(SHARD_SIZES))]
    return paths


@pytest.fixture(scope="module")
def truth(shards):
    """Every sequence as read_packed_shard gives it, by loader key."""
    return {f"{p.stem}/{s['key']}": s for p in shards for s in read_packed_shard(p, EXPECT)}


def make(shards, **options):
    settings_ = dict(image_mean=MEAN, image_std=STD, micro_batch=3, seed=11, shuffle_buffer=4, num_workers=0, rank=0, world_size=1)
    settings_.update(options)
    return PackedLoader(PackedDataset(shards, EXPECT, **settings_))


def assert_batch_matches(batch, truth):
    """Each row of the batch holds exactly the sequence its key names (tokens, labels, images)."""
    images_at = 0
    for row, key in enumerate(batch["keys"]):
        seq = truth[key]
        n = len(seq["tokens"])
        assert batch["input_ids"][row, :n].tolist() == seq["tokens"].tolist()
        assert (batch["input_ids"][row, n:] == SPEC["pad_id"]).all()
        assert (batch["labels"][row, n:] == IGNORE_INDEX).all()
        count = len(seq["images"])
        expected = (torch.from_numpy(seq["images"]).permute(0, 3, 1, 2).float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
        assert torch.allclose(batch["pixel_values"][images_at : images_at + count], expected)
        images_at += count
    assert images_at == batch["pixel_values"].shape[0]
    assert batch["input_ids"].shape[1] == SEQ_LEN


def keys_of(batches):
    return [k for b in batches for k in b["keys"]]


def assert_same_stream(got, want):
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a["keys"] == b["keys"]
        assert a.keys() == b.keys()
        for name, value in a.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, b[name]), name
            else:
                assert value == b[name], name


def test_two_ranks_two_workers_read_every_sequence_once(shards, truth):
    per_rank = []
    for rank in range(2):
        loader = make(shards, rank=rank, world_size=2, num_workers=2)
        batches = list(loader)
        assert len(batches) == len(loader)
        for batch in batches:
            assert_batch_matches(batch, truth)
        per_rank.append(keys_of(batches))
    everything = per_rank[0] + per_rank[1]
    assert sorted(everything) == sorted(truth), "union of both ranks is every sequence"
    assert len(set(everything)) == len(everything), "no sequence twice"
    assert abs(len(per_rank[0]) - len(per_rank[1])) <= 1


# Rank 2 of 3 with 2 workers holds 4 + 5 sequences: in batches of 2, worker 0 gives 2 and worker 1
# gives 3, so the stop at 4 falls after worker 0 has run dry.
@pytest.mark.parametrize(
    "options, stops",
    [({"num_workers": 0}, [0, 1, 2, 4, 7, 9]), ({"num_workers": 2}, [1, 4, 8]), ({"num_workers": 2, "micro_batch": 2, "rank": 2, "world_size": 3}, [1, 3, 4])],
)
def test_resume_continues_exactly_where_it_stopped(shards, options, stops):
    whole = list(make(shards, **options))
    assert len(set(keys_of(whole))) == len(keys_of(whole))
    for k in stops:
        first = make(shards, **options)
        stream = iter(first)
        taken = [next(stream) for _ in range(k)]
        state = first.state_dict()
        assert sum(state["consumed_batches"]) == k
        resumed = make(shards, **options)
        resumed.load_state_dict(state)
        rest = list(resumed)
        assert_same_stream(taken + rest, whole)


def test_resume_in_a_later_epoch(shards):
    uninterrupted = make(shards, num_workers=2)
    list(uninterrupted)
    epoch1 = list(uninterrupted)
    first = make(shards, num_workers=2)
    list(first)
    it = iter(first)
    head = [next(it), next(it), next(it)]
    resumed = make(shards, num_workers=2)
    resumed.load_state_dict(first.state_dict())
    assert resumed.epoch == 1
    assert_same_stream(head + list(resumed), epoch1)


def test_state_after_a_finished_epoch_starts_the_next(shards):
    loader = make(shards)
    list(loader)
    state = loader.state_dict()
    assert state["epoch"] == 1 and state["consumed_batches"] == [0]


def test_epochs_reshuffle_and_still_cover_everything(shards, truth):
    loader = make(shards, shuffle_buffer=8)
    epochs = [keys_of(list(loader)) for _ in range(3)]
    for keys in epochs:
        assert sorted(keys) == sorted(truth) and len(set(keys)) == len(keys)
    assert len({tuple(k) for k in epochs}) == 3, "each epoch has its own order"
    again = make(shards, shuffle_buffer=8)
    assert keys_of(list(again)) == epochs[0], "same seed and epoch, same order"
    other_seed = make(shards, shuffle_buffer=8, seed=12)
    assert keys_of(list(other_seed)) != epochs[0]


def test_without_shuffle_buffer_a_worker_reads_its_range_in_shard_order(shards):
    loader = make(shards, shuffle_buffer=0, micro_batch=1)
    ds = loader.dataset
    order = ds.shard_order(0)
    expected = [f"{shards[i].stem}/{s['key']}" for i in order for s in read_packed_shard(shards[i], EXPECT)]
    assert keys_of(list(loader)) == expected


def test_one_shard_split_over_many_slots(shards, truth):
    seen = []
    for rank in range(3):
        loader = make(shards[1:2], rank=rank, world_size=3, num_workers=2, micro_batch=1)
        seen.extend(keys_of(list(loader)))
    assert sorted(seen) == sorted(k for k in truth if k.startswith(shards[1].stem))


def test_shards_packed_for_another_run_are_refused(shards, tmp_path):
    bad = write_shard(tmp_path / "00000009.tar", [("000000099", [doc(4, 1)])], meta_overrides={"seq_len": 128})
    with pytest.raises(PackedShardError, match=r"seq_len = 128 but this run has seq_len = 64") as err:
        make([*shards, bad])
    assert str(bad) in str(err.value) and err.value.detail["field"] == "seq_len"
    odd = write_shard(tmp_path / "00000010.tar", [("000000100", [doc(4, 1)])], meta_overrides={"pad_id": 7})
    with pytest.raises(PackedShardError, match=r"00000010\.tar: packed with pad_id = 7 but .*00000000\.tar has 0") as err:
        make([*shards, odd])
    assert err.value.detail["field"] == "pad_id"


def test_state_from_a_different_split_is_refused(shards):
    state = make(shards, num_workers=0).state_dict()
    with pytest.raises(LoomComputeError, match=r"workers: saved 1, now 2"):
        make(shards, num_workers=2).load_state_dict(state)
    with pytest.raises(LoomComputeError, match=r"micro_batch: saved 3, now 4"):
        make(shards, micro_batch=4).load_state_dict(state)


def test_rank_and_world_come_from_the_environment(shards, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    ds = PackedDataset(shards, EXPECT, image_mean=MEAN, image_std=STD, micro_batch=2, seed=0)
    assert (ds.rank, ds.world_size) == (1, 3)


def test_read_packed_members_reads_only_what_it_is_asked(shards, tmp_path):
    path = shards[1]
    meta = read_pack_meta(path)
    got = [(o, k) for o, k, _ in read_packed_members(path, meta, [1, 4, 6])]
    keys = [s["key"] for s in read_packed_shard(path, EXPECT)]
    assert got == [(1, keys[1]), (4, keys[4]), (6, keys[6])]
    cut = tmp_path / "cut.tar"
    data = path.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(PackedShardError, match=str(cut)):
        list(read_packed_members(cut, {**meta}, [0]))


@settings(max_examples=200, deadline=None)
@given(
    counts=st.lists(st.integers(0, 9), min_size=1, max_size=8),
    world=st.integers(1, 5),
    workers=st.integers(1, 4),
    order_seed=st.randoms(use_true_random=False),
)
def test_split_is_an_exact_balanced_partition(counts, world, workers, order_seed):
    order = list(range(len(counts)))
    order_seed.shuffle(order)
    slots = world * workers
    ranges = split_ranges(sum(counts), slots)
    seen = []
    for begin, end in ranges:
        pieces = slot_segments(counts, order, begin, end)
        assert sum(p.stop - p.start for p in pieces) == end - begin
        seen.extend((p.shard, i) for p in pieces for i in range(p.start, p.stop))
    assert sorted(seen) == sorted((s, i) for s, n in enumerate(counts) for i in range(n)), "every sequence in exactly one slot"
    sizes = [end - begin for begin, end in ranges]
    assert max(sizes) - min(sizes) <= 1
    per_rank = [sum(sizes[r * workers : (r + 1) * workers]) for r in range(world)]
    assert max(per_rank) - min(per_rank) <= 1


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 300), buffer=st.integers(0, 40), key=st.integers(0, 2**64 - 1))
def test_shuffle_buffer_order_is_a_permutation_a_buffer_can_emit(n, buffer, key):
    order = shuffle_buffer_order(n, buffer, key)
    assert sorted(order) == list(range(n))
    for position, item in enumerate(order):
        assert item <= position + (buffer if buffer > 1 else 0), "never reads more than the buffer ahead"
    assert shuffle_buffer_order(n, buffer, key) == order


def _run_config(image_grid: int = 2) -> RunConfig:
    config = json.loads((ROOT / "vectors" / "config" / "valid" / "tiny-pretrain.json").read_text())["config"]
    config.update(stage="pretrain", seed=5, image_grid=image_grid)
    config["data"]["seq_len"] = SEQ_LEN
    config["model"]["vision"].update(image_size=8, image_mean=MEAN, image_std=STD)
    config["train"]["micro_batch"] = 4
    return parse_run_config(config)


def test_for_run_takes_its_settings_from_the_run_config(shards, truth):
    loader = PackedLoader.for_run(_run_config(), EXPECT["tokenizer_sha256"], shards, rank=0, world_size=1)
    batches = list(loader)
    assert [len(b["keys"]) for b in batches] == [4] * 6 + [2]
    assert sorted(keys_of(batches)) == sorted(truth)
    assert_batch_matches(batches[0], truth)
    with pytest.raises(PackedShardError, match="image_tokens_per_image = 4 but this run has image_tokens_per_image = 9"):
        PackedLoader.for_run(_run_config(image_grid=3), EXPECT["tokenizer_sha256"], shards, rank=0, world_size=1)
