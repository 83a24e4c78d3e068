"""The curation shard reader (`loom_compute.curate.shards`) against the TypeScript reader: the same
samples, uids (given or derived) and bad-sample reasons, in the same tar order."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
from fixtures.node import LOOM, REPO, run_compiled_module, run_node
from loom_compute.curate.shards import (
    GoodSample,
    derive_uid,
    read_shard,
    to_rgb,
)
from PIL import Image

READER_MODULE = REPO / "dist" / "src" / "shards" / "reader.js"
NODE_READER = """
import { readFileSync } from 'node:fs';
const { readShard } = await import(process.argv[1]);
const request = JSON.parse(readFileSync(0, 'utf8'));
const items = [];
for await (const item of readShard(request.path, { decodeImages: true })) {
  if (item.kind === 'sample') items.push({ kind: 'good', key: item.sample.key, uid: item.sample.uid, caption: item.sample.caption });
  else items.push({ kind: 'bad', key: item.bad.key, reason: item.bad.reason });
}
process.stdout.write(JSON.stringify(items));
"""


def ts_items(path: Path) -> list[dict]:
    return json.loads(run_compiled_module(READER_MODULE, NODE_READER, {"path": str(path)}))


def py_items(path: Path) -> list[dict]:
    out = []
    for item in read_shard(path):
        if isinstance(item, GoodSample):
            out.append({"kind": "good", "key": item.key, "uid": item.uid, "caption": item.caption})
        else:
            out.append({"kind": "bad", "key": item.key, "reason": item.reason})
    return out


def undecodable_as_one(items: list[dict]) -> list[dict]:
    merged = {"corrupt_image": "undecodable_image", "truncated_image": "undecodable_image"}
    return [{**item, "reason": merged.get(item["reason"], item["reason"])} if item["kind"] == "bad" else item for item in items]


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    run_node(str(LOOM), "synth", "--out", str(out), "--samples", "60", "--sft", "0", "--bench", "0", "--samples-per-shard", "30", "--quiet")
    return out / "pretrain"


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def picture(seed: int, mode: str = "RGB", size: tuple[int, int] = (20, 14)) -> Image.Image:
    raw = hashlib.sha256(str(seed).encode()).digest() * 200
    return Image.frombytes("RGB", size, raw[: size[0] * size[1] * 3]).convert(mode)


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def sample(key: str, image: bytes | None, ext: str = "jpg", caption: bytes | None = b"a picture", meta: dict | None = None) -> list[tuple[str, bytes]]:
    members = []
    if image is not None:
        members.append((f"{key}.{ext}", image))
    members.append((f"{key}.json", json.dumps(meta if meta is not None else {"source": "test"}).encode()))
    if caption is not None:
        members.append((f"{key}.txt", caption))
    return members


def test_synth_shards_read_as_the_typescript_reader_reads_them(synth: Path) -> None:
    shards = sorted(synth.glob("*.tar"))
    assert len(shards) == 2
    for shard in shards:
        ours = py_items(shard)
        assert ours == ts_items(shard)
        assert len(ours) == 30 and all(item["kind"] == "good" for item in ours)
        # the synth json carries the uid, which therefore is not the derived one
        with tarfile.open(shard) as tar:
            first_meta = json.loads(tar.extractfile(f"{ours[0]['key']}.json").read())
        assert ours[0]["uid"] == first_meta["uid"] != derive_uid(shard, ours[0]["key"])


def test_uid_is_derived_from_shard_name_and_key_when_the_json_has_none(tmp_path: Path) -> None:
    members = []
    for i in range(6):
        members += sample(f"k{i:03d}", encode(picture(i), "JPEG"))
    shard = write_tar(tmp_path / "00000007.tar", members)
    ours = py_items(shard)
    assert ours == ts_items(shard)
    assert [item["uid"] for item in ours] == [hashlib.md5(f"00000007.tar/k{i:03d}".encode()).hexdigest() for i in range(6)]


def zoo_members() -> list[tuple[str, bytes]]:
    """Good samples and one of each kind of bad one, in one shard."""
    good = encode(picture(1), "JPEG")
    return (
        sample("a0", good)
        + sample("a1", b"\xff\xd8\xff\xe0 not really a jpeg at all" * 4)  # corrupt image
        + sample("a2", encode(picture(2, "RGBA"), "PNG"), ext="png")
        + sample("a3", good[: len(good) // 2])  # cut JPEG
        + sample("a4", good, caption=None)
        + sample("a5", good, caption=b"   ")
        + sample("a6", None)
        + sample("a7", encode(picture(3), "PNG"), ext="jpg")  # PNG bytes named .jpg
        + sample("a8", good, meta={"uid": "NOT-A-UID"})
        + sample("a9", encode(picture(4), "WEBP"), ext="webp")
        + [("b.c.jpg", good), ("b.c.txt", b"dotted"), ("b.c.json", b"{}")]
        + sample("a0", good)  # duplicate key
        + sample("a10", good)
    )


def test_bad_samples_are_reported_in_order_and_their_neighbours_kept(tmp_path: Path) -> None:
    shard = write_tar(tmp_path / "00000001.tar", zoo_members())
    ours = py_items(shard)
    # PIL and libvips do not always agree on whether broken image data is cut or corrupt.
    assert undecodable_as_one(ours) == undecodable_as_one(ts_items(shard))
    kinds = {item["key"]: item.get("reason", "good") for item in undecodable_as_one(ours) if item["key"] != "a0"}
    assert kinds == {
        "a1": "undecodable_image", "a2": "good", "a3": "undecodable_image", "a4": "missing_caption", "a5": "empty_caption",
        "a6": "missing_image", "a7": "undecodable_image", "a8": "invalid_uid", "a9": "good", "b.c": "dotted_key", "a10": "good",
    }
    assert [item.get("reason", "good") for item in ours if item["key"] == "a0"] == ["good", "duplicate_key"]


def everything_read(path: Path, decode_workers: int) -> list[tuple]:
    """Every field of every item, the decoded pixels included."""
    return [
        ("good", i.key, i.uid, i.caption, i.ext, i.image_bytes, i.image.mode, i.image.size, i.image.tobytes()) if isinstance(i, GoodSample)
        else ("bad", i.key, i.reason, i.detail)
        for i in read_shard(path, decode_workers=decode_workers)
    ]


@pytest.mark.parametrize("workers", [1, 3])
def test_decoding_in_threads_yields_the_same_items_in_the_same_order(tmp_path: Path, synth: Path, workers: int) -> None:
    zoo = write_tar(tmp_path / "00000001.tar", zoo_members())
    cut = tmp_path / "00000002.tar"
    cut.write_bytes(zoo.read_bytes()[: zoo.stat().st_size * 2 // 3])
    for shard in (zoo, cut, min(synth.glob("*.tar"))):
        serial = everything_read(shard, 0)
        assert sum(item[0] == "good" for item in serial) >= 3
        assert everything_read(shard, workers) == serial, shard.name


def member_spans(tar_bytes: bytes) -> list[tuple[int, int, int]]:
    """(header start, data start, data end) of each member."""
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        return [(info.offset, info.offset_data, info.offset_data + info.size) for info in tar]


@pytest.mark.parametrize("where", ["inside_header", "inside_data", "inside_padding", "one_zero_block", "after_marker"])
def test_a_cut_archive_keeps_the_samples_before_the_cut(tmp_path: Path, where: str) -> None:
    members = []
    for i in range(4):
        members += sample(f"c{i}", encode(picture(i, size=(8, 8)), "PNG"), ext="png")
    whole = write_tar(tmp_path / "whole.tar", members).read_bytes()
    spans = member_spans(whole)
    end_of_last = spans[-1][1] + -(-(spans[-1][2] - spans[-1][1]) // 512) * 512
    cut = {
        "inside_header": spans[7][0] + 100,
        "inside_data": spans[6][1] + 20,
        "inside_padding": spans[5][2] + 3,
        "one_zero_block": end_of_last + 512,
        "after_marker": end_of_last + 1024,
    }[where]
    shard = tmp_path / "00000002.tar"
    shard.write_bytes(whole[:cut])
    ours = py_items(shard)
    assert ours == ts_items(shard)
    truncated = [item for item in ours if item["kind"] == "bad"]
    good = [item["key"] for item in ours if item["kind"] == "good"]
    if where == "after_marker":
        assert truncated == [] and good == ["c0", "c1", "c2", "c3"]
    else:
        assert [item["reason"] for item in truncated] == ["truncated_tar"]
        assert good[:1] == ["c0"]


def test_an_invalid_header_after_valid_ones_is_a_corrupt_tar(tmp_path: Path) -> None:
    members = []
    for i in range(3):
        members += sample(f"d{i}", encode(picture(i, size=(8, 8)), "PNG"), ext="png")
    data = bytearray(write_tar(tmp_path / "whole.tar", members).read_bytes())
    header = member_spans(bytes(data))[6][0]  # d2.png's header
    data[header + 148 : header + 156] = b"9999999\0"  # a wrong checksum
    shard = tmp_path / "00000004.tar"
    shard.write_bytes(bytes(data))
    ours = py_items(shard)
    assert ours == ts_items(shard)
    assert [item.get("reason", "good") for item in ours] == ["good", "good", "corrupt_tar"]


def test_not_a_tar_is_one_bad_item(tmp_path: Path) -> None:
    shard = tmp_path / "00000003.tar"
    shard.write_bytes(b"hello, this is text and not an archive\n" * 40)
    assert py_items(shard) == ts_items(shard) == [{"kind": "bad", "key": None, "reason": "not_a_tar"}]


@pytest.mark.parametrize("mode", ["RGBA", "LA", "L", "P", "CMYK", "I;16", "RGB"])
def test_images_become_rgb_as_transformers_convert_to_rgb_makes_them(mode: str) -> None:
    from transformers.image_transforms import convert_to_rgb

    image = picture(5, "RGBA").convert(mode) if mode != "I;16" else picture(5, "L").convert("I;16")
    ours = to_rgb(image)
    theirs = convert_to_rgb(image)
    assert ours.mode == theirs.mode == "RGB"
    assert ours.tobytes() == theirs.tobytes()
