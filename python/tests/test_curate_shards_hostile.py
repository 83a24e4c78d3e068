"""Hostile and unusual samples: the Python reader gives the verdicts of the TypeScript reader
(image + .txt without .json is good; unsafe keys and extensions; images over the pixel limit)."""

from __future__ import annotations

import hashlib
import io
import json
import re
import struct
import tarfile
import zlib
from pathlib import Path

from loom_compute.curate.shards import (
    MAX_KEY_BYTES,
    BadSample,
    GoodSample,
    decode_image,
    extension_problem,
    key_problem,
    read_shard,
)
from loom_compute.images_limit import MAX_IMAGE_PIXELS
from test_curate_shards import REPO, encode, picture, py_items, sample, ts_items


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    """Like test_curate_shards.write_tar, in PAX format so names of any length fit."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path

UNSAFE_KEYS = [
    "../../x",
    "/abs/x",
    "a\\b",
    "tab\there",
    "nl\nx",
    "a//b",
    "a/./b",
    "trailing/",
    "k" * (MAX_KEY_BYTES + 1),
    "d" * 201 + "/k",
    "bad\udcffname",  # a name that is not UTF-8 (tarfile's surrogateescape)
]


def png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")


def same_keys(items: list[dict]) -> list[dict]:
    """Node decodes a name that is not UTF-8 to U+FFFD, tarfile to surrogates: the same verdict."""
    return [{**item, "key": re.sub("[\ud800-\udfff]", "\ufffd", item["key"]) if item["key"] else item["key"]} for item in items]


def test_max_image_pixels_is_the_value_shared_with_typescript() -> None:
    limits = json.loads((REPO / "vectors" / "limits.json").read_text(encoding="utf-8"))
    assert MAX_IMAGE_PIXELS == limits["max_image_pixels"]


def test_image_and_caption_without_json_is_a_good_sample_with_the_derived_uid(tmp_path: Path) -> None:
    jpg = encode(picture(1), "JPEG")
    shard = write_tar(tmp_path / "00000005.tar", [("k1.jpg", jpg), ("k1.txt", b"a cat")] + sample("k2", jpg))
    ours = py_items(shard)
    assert ours == ts_items(shard)
    assert ours[0] == {"kind": "good", "key": "k1", "uid": hashlib.md5(b"00000005.tar/k1").hexdigest(), "caption": "a cat"}
    assert len(ours) == 2


def test_unsafe_keys_and_extensions_are_bad_as_in_typescript(tmp_path: Path) -> None:
    jpg = encode(picture(2), "JPEG")
    members = sample("g0", jpg)
    for i, key in enumerate(UNSAFE_KEYS):
        members += sample(key, jpg) + sample(f"g{i + 1}", jpg)
    members += sample("e1", jpg) + [("e1.np\\y", b"x")] + sample("e2", jpg) + [("e2.n\x01py", b"x")]
    shard = write_tar(tmp_path / "00000000.tar", members)
    ours = py_items(shard)
    assert same_keys(ours) == same_keys(ts_items(shard))
    bad = [(item["reason"], item["key"]) for item in ours if item["kind"] == "bad"]
    assert bad == [("unsafe_key", key) for key in [*UNSAFE_KEYS, "e1", "e2"]]
    assert sum(item["kind"] == "good" for item in ours) == len(UNSAFE_KEYS) + 1
    assert all(key_problem(key) for key in UNSAFE_KEYS)
    assert key_problem("v1.2/k") is None and key_problem("a.b") is not None
    assert extension_problem("npy") is None and extension_problem("np\\y") is not None


def test_images_over_the_pixel_limit_are_image_too_large_before_decoding(tmp_path: Path) -> None:
    jpg = encode(picture(3), "JPEG")
    side = int((MAX_IMAGE_PIXELS + 1) ** 0.5) + 1
    members = (
        sample("a", jpg)
        + sample("huge", png_header_only(side, side), ext="png")  # PIL only warns about this one
        + sample("bomb", png_header_only(3 * side, 3 * side), ext="png")  # PIL refuses this one at open
        + sample("mislabelled", png_header_only(3 * side, 3 * side), ext="jpg")
        + sample("b", jpg)
    )
    shard = write_tar(tmp_path / "00000000.tar", members)
    ours = py_items(shard)
    assert ours == ts_items(shard)
    assert [(item["key"], item.get("reason", "good")) for item in ours] == [
        ("a", "good"), ("huge", "image_too_large"), ("bomb", "image_too_large"), ("mislabelled", "corrupt_image"), ("b", "good"),
    ]
    image, reason, detail = decode_image(png_header_only(side, side), "png")
    assert image is None and reason == "image_too_large" and str(MAX_IMAGE_PIXELS) in detail


def test_every_item_is_good_or_bad_with_its_key(tmp_path: Path) -> None:
    jpg = encode(picture(4), "JPEG")
    shard = write_tar(tmp_path / "00000000.tar", sample("../x", jpg) + sample("ok", jpg))
    items = list(read_shard(shard))
    assert isinstance(items[0], BadSample) and "../x" in items[0].detail
    assert isinstance(items[1], GoodSample)
