"""The one listing of a pack's shards (data.packed.packed_shard_paths) finds exactly what `loom pack` wrote."""

from __future__ import annotations

import json

from loom_compute.data import packed_shard_paths


def test_packed_shard_paths_lists_the_shards_pack_json_names(tiny_packs):
    for pack in tiny_packs.values():
        written = json.loads((pack / "pack.json").read_text(encoding="utf-8"))["shards"]
        assert written, pack
        assert packed_shard_paths(pack) == [pack / name for name in sorted(written)]
