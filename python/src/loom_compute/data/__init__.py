"""Training data: Loom's packed shards (see packed.py)."""

from loom_compute.data.packed import (
    IGNORE_INDEX,
    PackedShardError,
    collate_packed,
    expectations,
    read_pack_meta,
    read_packed_shard,
)

__all__ = ["IGNORE_INDEX", "PackedShardError", "collate_packed", "expectations", "read_pack_meta", "read_packed_shard"]
