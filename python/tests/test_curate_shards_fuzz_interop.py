"""Random complete tars (seeded: random member names, hostile ones included, and contents) read by
the Python and the TypeScript reader give the same items in the same order.

Cut archives are compared by test_curate_shards' cut tests only: on PAX archives cut inside the
zero padding after the end-of-archive marker, or inside a header, tar-stream and tarfile still
disagree (truncated_tar vs ok, truncated_tar vs corrupt_tar), a known gap."""

from __future__ import annotations

import json
import random
from pathlib import Path

from fixtures.node import run_compiled_module
from test_curate_shards import READER_MODULE, py_items, undecodable_as_one
from test_curate_shards_fuzz import JPEG, PNG, build_tar
from test_curate_shards_hostile import same_keys

NODE_READER_MANY = """
import { readFileSync } from 'node:fs';
const { readShard } = await import(process.argv[1]);
const out = [];
for (const path of JSON.parse(readFileSync(0, 'utf8')).paths) {
  const items = [];
  for await (const item of readShard(path, { decodeImages: true })) {
    if (item.kind === 'sample') items.push({ kind: 'good', key: item.sample.key, uid: item.sample.uid, caption: item.sample.caption });
    else items.push({ kind: 'bad', key: item.bad.key, reason: item.bad.reason });
  }
  out.push(items);
}
process.stdout.write(JSON.stringify(out));
"""

KEYS = ["a", "b", "dir/c", "../x", "/abs", "a.b", "k\n", "a//b", "x\\y", "ü", "v1.2/k", "k" * 600]
EXTS = ["jpg", "JPEG", "png", "webp", "txt", "json", "npy", "b.jpg", "x.txt", "np\\y", ""]
DATAS = [JPEG, PNG, JPEG[:40], b"{}", b'{"uid":"nope"}', b'{"uid":"0123456789abcdef0123456789abcdef"}', b"[1]", b"a caption", b"  ", b"\xff\xfe", b""]


def random_group(rng: random.Random) -> list[tuple[str, str, bytes]]:
    """Members sharing a key: often a plausible sample (image, caption, maybe json), else noise."""
    key = rng.choice(KEYS)
    if rng.random() < 0.5:
        image = rng.choice([("jpg", JPEG), ("png", PNG), ("JPEG", JPEG), ("jpg", PNG), ("jpg", JPEG[:40])])
        group = [(key, image[0], image[1]), (key, "txt", rng.choice([b"a caption", b"caption two", b"  "]))]
        if rng.random() < 0.6:
            group.append((key, "json", rng.choice(DATAS[3:7])))
        if rng.random() < 0.2:
            group.append((key, rng.choice(EXTS), rng.choice(DATAS)))
        rng.shuffle(group)
        return group
    return [(key, rng.choice(EXTS), rng.choice(DATAS)) for _ in range(rng.randrange(1, 4))]


def random_tar(rng: random.Random) -> bytes:
    while True:
        entries = [member for _ in range(rng.randrange(6)) for member in random_group(rng)]
        data = build_tar(entries)
        if data is not None:
            break
    return data


def test_python_and_typescript_readers_agree_on_random_tars(tmp_path: Path) -> None:
    rng = random.Random(10)
    paths = []
    for i in range(120):
        path = tmp_path / f"{i:08d}.tar"
        path.write_bytes(random_tar(rng))
        paths.append(path)
    theirs = json.loads(run_compiled_module(READER_MODULE, NODE_READER_MANY, {"paths": [str(p) for p in paths]}))
    good = 0
    for path, ts in zip(paths, theirs):
        ours = py_items(path)
        assert undecodable_as_one(same_keys(ours)) == undecodable_as_one(same_keys(ts)), path.name
        good += sum(item["kind"] == "good" for item in ours)
    assert good >= 10, "the generator should also make good samples"
