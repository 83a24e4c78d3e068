"""read_packed_shard and collate_packed on shards built here with the stdlib (no Node needed):
every broken shard gives a PackedShardError naming the file, and collate's invariants hold for
any document layout."""


import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fixtures.packed_builders import EXPECT, IMAGE_ID, PAD, SEQ_LEN, SIZE, doc, jpeg, npy, sequence_members, write_shard
from loom_compute.data import IGNORE_INDEX, PackedShardError, collate_packed, read_pack_meta, read_packed_shard

SEQS = [("000000000", [doc(5, 0), doc(9, 1)]), ("000000001", [doc(30, 2)]), ("000000002", [doc(3, 3), doc(4, 4), doc(2, 5)])]


def test_reads_a_shard_written_with_the_stdlib(tmp_path):
    path = write_shard(tmp_path / "00000000.tar", SEQS)
    got = list(read_packed_shard(path, EXPECT))
    assert [g["key"] for g in got] == [k for k, _ in SEQS]
    for g, (_, docs) in zip(got, SEQS):
        assert g["tokens"].tolist() == [t for d in docs for t in d[0]]
        assert g["doclens"].tolist() == [len(d[0]) for d in docs]
        assert g["images"].shape == (len(docs), SIZE, SIZE, 3)
    assert got[0]["images"][1, 0, 0].tolist() == pytest.approx([40, 215, 7], abs=3)
    assert read_pack_meta(path)["sequences"] == 3


@pytest.mark.parametrize(
    "members, message",
    [
        (sequence_members("k", [doc(5, 0)])[:-1], r"sequence k lacks tokens\.npy"),
        (sequence_members("k", [doc(5, 0)], images=[]), r"4 image tokens but 0 image\(s\)"),
        (sequence_members("k", [doc(5, 0)], images=[jpeg(1, size=9)]), r"k\.img000\.jpg is 9x9, expected 8x8"),
        (sequence_members("k", [doc(5, 0)], images=[b"not an image"]), r"k\.img000\.jpg is not a readable image"),
        ([(n, npy(np.zeros(10, np.int64)) if n.endswith("tokens.npy") else d) for n, d in sequence_members("k", [doc(5, 0)])], r"k\.tokens\.npy holds int64"),
        ([(n, npy(np.array([1, 2], dtype=object)) if n.endswith("loss.npy") else d) for n, d in sequence_members("k", [doc(5, 0)])], r"k\.loss\.npy is not a valid \.npy \(Object arrays cannot be loaded"),
        ([(n, npy(np.array([3], "<i4")) if n.endswith("doclens.npy") else d) for n, d in sequence_members("k", [doc(5, 0)])], r"document lengths \[3\] do not add up to its 10 tokens"),
        (sequence_members("k", [doc(70, 0)]), r"75 tokens exceed seq_len 64"),
        (sequence_members("k", [doc(5, 0)]) + sequence_members("j", [doc(5, 0)]) + sequence_members("k", [doc(5, 0)]), r"members of sequence k are not together"),
        (sequence_members("k", [doc(5, 0)]) + [("k.extra", b"x")], r"unexpected member k\.extra"),
    ],
)
def test_broken_sequences_name_the_file_and_the_problem(tmp_path, members, message):
    path = write_shard(tmp_path / "bad.tar", [("k", [doc(5, 0)])], members_override=members)
    with pytest.raises(PackedShardError, match=message) as err:
        list(read_packed_shard(path, EXPECT))
    assert str(path) in str(err.value)


def test_header_counts_must_match_the_content(tmp_path):
    path = write_shard(tmp_path / "x.tar", SEQS, meta_overrides={"images": 99})
    with pytest.raises(PackedShardError, match=r"header says images = 99 but the shard holds 6"):
        list(read_packed_shard(path, EXPECT))


def test_header_problems(tmp_path):
    with pytest.raises(PackedShardError, match="format version 2"):
        next(read_packed_shard(write_shard(tmp_path / "v.tar", SEQS, meta_overrides={"version": 2}), EXPECT))
    with pytest.raises(PackedShardError, match="has format 'other'"):
        next(read_packed_shard(write_shard(tmp_path / "f.tar", SEQS, meta_overrides={"format": "other"}), EXPECT))
    with pytest.raises(PackedShardError, match="image_token_id = 3 but this run has image_token_id = 5"):
        next(read_packed_shard(write_shard(tmp_path / "i.tar", SEQS), {**EXPECT, "image_token_id": 5}))


def test_every_cut_of_a_shard_fails_cleanly_or_reads_whole(tmp_path):
    data = write_shard(tmp_path / "whole.tar", SEQS).read_bytes()
    cut = tmp_path / "cut.tar"
    whole = len(list(read_packed_shard(tmp_path / "whole.tar", EXPECT)))
    for end in range(0, len(data), 97):
        cut.write_bytes(data[:end])
        try:
            got = list(read_packed_shard(cut, EXPECT))
        except PackedShardError as err:
            assert str(cut) in str(err)
        else:
            assert len(got) == whole, f"cut at {end} read {len(got)} sequences without error"


@st.composite
def batches(draw):
    rows = []
    for r in range(draw(st.integers(1, 4))):
        docs = [doc(draw(st.integers(0, 12)), r * 10 + i) for i in range(draw(st.integers(1, 4)))]
        total = sum(len(d[0]) for d in docs)
        if total > SEQ_LEN:
            docs = docs[:1]
        tokens = np.array([t for d in docs for t in d[0]], dtype=np.int32)
        loss = np.array([m for d in docs for m in d[1]], dtype=np.uint8)
        images = np.full((len(docs), SIZE, SIZE, 3), draw(st.integers(0, 255)), dtype=np.uint8)
        rows.append({"tokens": tokens, "loss": loss, "doclens": np.array([len(d[0]) for d in docs], np.int32), "images": images})
    return rows


@settings(max_examples=60, deadline=None)
@given(batches())
def test_collate_invariants(rows):
    batch = collate_packed(rows, SEQ_LEN, PAD, [0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
    cu = batch["cu_seqlens"].tolist()
    assert cu[0] == 0 and cu[-1] == len(rows) * SEQ_LEN and all(a < b for a, b in zip(cu, cu[1:]))
    flat_pos = batch["position_ids"].reshape(-1).tolist()
    flat_doc = batch["document_ids"].reshape(-1).tolist()
    flat_labels = batch["labels"].reshape(-1).tolist()
    for s, (a, b) in enumerate(zip(cu, cu[1:])):
        assert flat_pos[a:b] == list(range(b - a)), "positions restart at 0 in every segment"
        assert set(flat_doc[a:b]) == {s}
        assert flat_labels[a] == IGNORE_INDEX, "no segment's first token is a target"
        assert (a // SEQ_LEN) == ((b - 1) // SEQ_LEN), "no segment crosses a row"
    for r, row in enumerate(rows):
        n = len(row["tokens"])
        labels = batch["labels"][r]
        assert (labels[n:] == IGNORE_INDEX).all() and (batch["input_ids"][r, n:] == PAD).all()
        real = labels[:n].numpy()
        assert ((real == IGNORE_INDEX) | (real == row["tokens"])).all()
        assert (real[row["tokens"] == IMAGE_ID] == IGNORE_INDEX).all()
        assert (real[row["loss"] == 0] == IGNORE_INDEX).all()
    px = batch["pixel_values"]
    assert px.shape[0] == sum(len(r["images"]) for r in rows) and px.min() >= -1 and px.max() <= 1
    assert px.dtype == torch.float32
