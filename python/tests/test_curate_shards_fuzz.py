"""Fuzzing the Python shard reader: generated tars (random member names, sizes, contents, cut at
random, overwritten with garbage) never make it raise; every item is a good sample or a bad one
with one of the reasons the TypeScript reader knows (src/shards/types.ts BAD_REASONS)."""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from loom_compute.curate.shards import GoodSample, is_valid_uid, key_problem, read_shard
from test_curate_shards import REPO, encode, picture

TYPES_TS = (REPO / "src" / "shards" / "types.ts").read_text(encoding="utf-8")
BAD_REASONS = set(re.findall(r"^  '([a-z_]+)',", TYPES_TS.split("export const BAD_REASONS")[1].split("] as const")[0], re.M))

JPEG = encode(picture(1, size=(12, 9)), "JPEG")
PNG = encode(picture(2, size=(6, 5)), "PNG")

keys = st.one_of(st.sampled_from(["a", "b", "dir/c", "../x", "/abs", "a.b", "k\n", "a//b", "x\\y", "ü"]), st.text(max_size=8))
exts = st.one_of(st.sampled_from(["jpg", "JPEG", "png", "webp", "txt", "json", "npy", "b.jpg", "x.txt", ""]), st.text(max_size=5))
datas = st.one_of(
    st.sampled_from([JPEG, PNG, JPEG[:40], b"{}", b'{"uid":"nope"}', b"[1]", b"a caption", b"  ", b"\xff\xfe", b""]),
    st.binary(max_size=700),
)
members = st.lists(st.tuples(keys, exts, datas), max_size=14)
damages = st.one_of(
    st.just(("none", 0.0, b"")),
    st.tuples(st.just("cut"), st.floats(0, 1), st.just(b"")),
    st.tuples(st.just("garbage"), st.floats(0, 1), st.binary(min_size=1, max_size=600)),
)


def build_tar(entries: list[tuple[str, str, bytes]]) -> bytes | None:
    out = io.BytesIO()
    try:
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for key, ext, data in entries:
                info = tarfile.TarInfo(f"{key}.{ext}" if ext else key)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    except (ValueError, UnicodeError):
        return None  # a name tarfile cannot write at all: nothing to read
    return out.getvalue()


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(entries=members, damage=damages)
def test_generated_tars_never_raise_and_every_item_is_good_or_a_known_reason(tmp_path: Path, entries, damage) -> None:
    assert {"unsafe_key", "image_too_large", "truncated_tar"} <= BAD_REASONS
    data = build_tar(entries)
    if data is None:
        return
    kind, at, garbage = damage
    if kind == "cut":
        data = data[: int(len(data) * at)]
    elif kind == "garbage":
        start = int(len(data) * at)
        data = data[:start] + garbage + data[start + len(garbage) :]
    shard = tmp_path / "00000000.tar"
    shard.write_bytes(data)
    for item in read_shard(shard):
        if isinstance(item, GoodSample):
            assert key_problem(item.key) is None, item.key
            assert is_valid_uid(item.uid) and item.caption.strip() and item.image.mode == "RGB"
        else:
            assert item.reason in BAD_REASONS, item.reason
            assert item.detail
