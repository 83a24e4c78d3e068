"""Packed shards written by Loom's TypeScript writer read back in Python, field by field.

The fixture (test/ts/pack/format/fixture.ts) packs the synthetic data with the real document
builder and writer and records every sequence in expected.json. Here the reader must return
exactly that, the documents are rebuilt independently with Python's `tokenizers`, the images are
compared with their sources, and collate_packed is checked against the document lengths.
"""

import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tokenizers import Tokenizer

from fixtures.node import BUILT_CLI, LOOM, REPO, require_built, run_node
from loom_compute.config import parse_run_config
from loom_compute.data import IGNORE_INDEX, PackedShardError, collate_packed, expectations, read_pack_meta, read_packed_shard
from loom_compute.data_text import plain_text_tokenizer

FIXTURE = REPO / "dist" / "test" / "ts" / "pack" / "format" / "fixture.js"
SEQ_LEN = 160
PER_SHARD = 4



@pytest.fixture(scope="module", autouse=True)
def built():
    require_built(FIXTURE, BUILT_CLI)  # fails, never skips, without node or dist/ (`make test-py` builds first)



@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    root = tmp_path_factory.mktemp("packed")
    run_node(str(LOOM), "synth", "--out", str(root / "synth"), "--samples", "50", "--sft", "0", "--bench", "0", "--quiet")
    run_node(str(FIXTURE), str(root / "synth"), str(root / "out"), str(SEQ_LEN), str(PER_SHARD))
    expected = json.loads((root / "out" / "expected.json").read_text(encoding="utf-8"))
    return root, expected


def expect_of(expected):
    spec = expected["spec"]
    return {k: spec[k] for k in ("tokenizer_sha256", "image_tokens_per_image", "seq_len", "stage", "image_size")}


def read_all(expected):
    out = []
    for shard in expected["summary"]["shards"]:
        out.extend(read_packed_shard(shard, expect_of(expected)))
    return out


def test_reader_returns_every_field(packed):
    _, expected = packed
    got = read_all(expected)
    assert len(got) == len(expected["sequences"]) == expected["summary"]["sequences"]
    assert len(expected["summary"]["shards"]) > 1
    for seq, exp in zip(got, expected["sequences"]):
        assert seq["key"] == exp["key"]
        assert seq["tokens"].dtype == np.int32 and seq["tokens"].tolist() == exp["tokens"]
        assert seq["doclens"].dtype == np.int32 and seq["doclens"].tolist() == exp["doclens"]
        assert seq["loss"].dtype == np.uint8 and seq["loss"].tolist() == exp["loss"]
        assert seq["uids"] == exp["uids"]
        size = expected["spec"]["image_size"]
        assert seq["images"].shape == (exp["images"], size, size, 3) and seq["images"].dtype == np.uint8
    assert sum(len(s["doclens"]) for s in got) == expected["counts"]["kept"] + expected["counts"]["truncated"]


def test_header_and_sidecar(packed):
    _, expected = packed
    for i, shard in enumerate(expected["summary"]["shards"]):
        meta = read_pack_meta(shard)
        in_shard = [s for s in expected["sequences"] if s["shard"] == shard]
        assert {k: meta[k] for k in expected["spec"]} == expected["spec"]
        assert meta["format"] == "loom-packed" and meta["version"] == 1
        assert meta["shard"] == Path(shard).name
        assert meta["sequences"] == len(in_shard)
        assert meta["documents"] == sum(len(s["doclens"]) for s in in_shard)
        assert meta["images"] == sum(s["images"] for s in in_shard)
        assert meta["real_tokens"] == sum(len(s["tokens"]) for s in in_shard)
        assert (meta["first_key"], meta["last_key"]) == (in_shard[0]["key"], in_shard[-1]["key"])
        sidecar = json.loads(Path(shard).with_name(f"{i:08d}_pack.json").read_text())
        assert {k: sidecar[k] for k in meta} == meta
        assert sidecar["tar_bytes"] == Path(shard).stat().st_size


def test_the_run_config_gives_the_same_expectations(packed):
    _, expected = packed
    sha = hashlib.sha256(Path(expected["tokenizer_path"]).read_bytes()).hexdigest()
    assert expectations(parse_run_config(expected["config"]), sha) == expect_of(expected)


def test_npy_members_are_byte_identical_to_numpy_save(packed):
    _, expected = packed
    checked = 0
    with tarfile.open(expected["summary"]["shards"][0]) as tar:
        for member in tar.getmembers():
            if member.name.endswith(".npy"):
                data = tar.extractfile(member).read()
                out = io.BytesIO()
                np.save(out, np.load(io.BytesIO(data), allow_pickle=False))
                assert out.getvalue() == data, member.name
                checked += 1
    assert checked >= 3


def test_documents_rebuilt_with_python_tokenizers(packed):
    """Each document equals <image> x grid^2 + "\\n" + caption + <|im_end|>, tokenized by HF tokenizers in Python
    (the caption as plain text: special-token strings in it are ordinary tokens)."""
    _, expected = packed
    assert expected["template"] == "<image>\n{caption}<|im_end|>"
    tok = Tokenizer.from_file(expected["tokenizer_path"])
    plain = plain_text_tokenizer(tok)
    special_ids = {i for i, t in tok.get_added_tokens_decoder().items() if t.special}
    spec = expected["spec"]
    newline = tok.encode("\n", add_special_tokens=False).ids
    prefix = [spec["image_token_id"]] * spec["image_tokens_per_image"] + newline
    truncated = 0
    for seq in expected["sequences"]:
        at = 0
        for doc, length in zip(seq["docs"], seq["doclens"]):
            caption = plain.encode(doc["caption"], add_special_tokens=False).ids
            assert not special_ids & set(caption)
            keep = min(len(caption), SEQ_LEN - len(prefix) - 1)
            truncated += len(caption) > keep
            assert doc["truncated_tokens"] == len(caption) - keep
            ids = prefix + caption[:keep] + [spec["eos_id"]]
            assert seq["tokens"][at : at + length] == ids
            assert seq["loss"][at : at + length] == [0] * len(prefix) + [1] * (keep + 1)
            at += length
    assert truncated == expected["counts"]["truncated"] == 1
    assert expected["counts"]["specialTokenStrings"] == 3


def source_images(expected):
    images = {}
    for shard in {d["source_shard"] for s in expected["sequences"] for d in s["docs"]}:
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                key, ext = member.name.split(".", 1)
                if ext in ("jpg", "png", "webp"):
                    images[(shard, key)] = tar.extractfile(member).read()
    return images


def test_images_are_the_sources_resized_in_order(packed):
    _, expected = packed
    size = expected["spec"]["image_size"]
    assert expected["resize"] == "squash"
    sources = source_images(expected)
    reference = {
        k: np.asarray(Image.open(io.BytesIO(v)).convert("RGB").resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32)
        for k, v in sources.items()
    }
    for seq in read_all(expected):
        exp = next(s for s in expected["sequences"] if s["key"] == seq["key"])
        for img, doc in zip(seq["images"], exp["docs"]):
            diffs = {k: float(np.abs(img.astype(np.float32) - ref).mean()) for k, ref in reference.items()}
            own = diffs[(doc["source_shard"], doc["source_key"])]
            assert own < 4.0, f"{seq['key']}: image of {doc['source_key']} differs by {own:.2f} levels on average"
            assert own == min(diffs.values()), f"{seq['key']}: another source image matches {doc['source_key']}'s better"


def test_collate_for_isolated_attention(packed):
    _, expected = packed
    spec = expected["spec"]
    seqs = read_all(expected)[:5]
    batch = collate_packed(seqs, SEQ_LEN, spec["pad_id"], expected["image_mean"], expected["image_std"])
    B = len(seqs)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["position_ids"].shape == (B, SEQ_LEN)
    prefix_len = spec["image_tokens_per_image"] + 1  # "\n" is one token in the tiny tokenizer
    segments = []
    for row, seq in enumerate(seqs):
        n = len(seq["tokens"])
        assert batch["input_ids"][row, :n].tolist() == seq["tokens"].tolist()
        assert (batch["input_ids"][row, n:] == spec["pad_id"]).all()
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (SEQ_LEN - n)
        lengths = seq["doclens"].tolist() + ([SEQ_LEN - n] if n < SEQ_LEN else [])
        segments += lengths
        assert batch["position_ids"][row].tolist() == [p for length in lengths for p in range(length)]
        want = []
        for length in seq["doclens"].tolist():
            doc = seq["tokens"][len(want) : len(want) + length].tolist()
            want += [IGNORE_INDEX] * prefix_len + doc[prefix_len:]
        want += [IGNORE_INDEX] * (SEQ_LEN - n)
        assert batch["labels"][row].tolist() == want
        assert not ((batch["labels"][row] == spec["image_token_id"]).any())
    assert batch["cu_seqlens"].dtype == torch.int32
    assert batch["cu_seqlens"].tolist() == np.concatenate([[0], np.cumsum(segments)]).tolist()
    assert batch["cu_seqlens"][-1] == B * SEQ_LEN
    assert batch["max_seqlen"] == max(segments)
    flat_doc = batch["document_ids"].reshape(-1)
    assert flat_doc.tolist() == [i for i, length in enumerate(segments) for _ in range(length)]

    images = np.concatenate([s["images"] for s in seqs])
    px = batch["pixel_values"]
    assert px.shape == (len(images), 3, spec["image_size"], spec["image_size"]) and px.dtype == torch.float32
    assert px.min() >= -1.0 and px.max() <= 1.0
    assert torch.allclose(px, torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0, atol=1e-6)
    assert batch["images_per_row"].tolist() == [len(s["images"]) for s in seqs]
    image_positions = int((batch["input_ids"] == spec["image_token_id"]).sum())
    assert image_positions == len(images) * spec["image_tokens_per_image"]


@pytest.mark.parametrize(
    "field, value",
    [("tokenizer_sha256", "0" * 64), ("image_tokens_per_image", 144), ("seq_len", 4096), ("stage", "sft"), ("image_size", 384)],
)
def test_mismatched_run_is_refused(packed, field, value):
    _, expected = packed
    shard = expected["summary"]["shards"][0]
    expect = {**expect_of(expected), field: value}
    with pytest.raises(PackedShardError) as err:
        next(read_packed_shard(shard, expect))
    message = str(err.value)
    assert shard in message and field in message and repr(value) in message and repr(expected["spec"][field]) in message
    assert err.value.detail == {"field": field, "shard": expected["spec"][field], "run": value}


def test_broken_shards_are_refused_with_the_file_named(packed, tmp_path):
    root, expected = packed
    expect = expect_of(expected)
    raw = next((root / "synth" / "pretrain").glob("*.tar"))
    with pytest.raises(PackedShardError, match=rf"{raw}: first member is .*expected __loom_pack__\.json"):
        next(read_packed_shard(raw, expect))

    shard = Path(expected["summary"]["shards"][1])
    cut = tmp_path / "cut.tar"
    cut.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2 + 100])
    with pytest.raises(PackedShardError, match=rf"{cut}"):
        list(read_packed_shard(cut, expect))

    with pytest.raises(PackedShardError, match="no such packed shard"):
        next(read_packed_shard(tmp_path / "missing.tar", expect))
    with pytest.raises(ValueError, match="expect lacks seq_len"):
        next(read_packed_shard(shard, {k: v for k, v in expect.items() if k != "seq_len"}))
