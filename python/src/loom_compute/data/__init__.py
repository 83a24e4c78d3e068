"""Training data: Loom's packed shards (see packed.py) and the resumable loader over them (loader.py)."""

from loom_compute.data.loader import PackedDataset, PackedLoader, split_ranges
from loom_compute.data.packed import (
    IGNORE_INDEX,
    PackedShardError,
    check_pack_meta,
    collate_packed,
    decode_packed_sequence,
    expectations,
    packed_shard_paths,
    read_pack_meta,
    read_packed_members,
    read_packed_shard,
)

__all__ = [
    "IGNORE_INDEX",
    "PackedDataset",
    "PackedLoader",
    "PackedShardError",
    "check_pack_meta",
    "collate_packed",
    "decode_packed_sequence",
    "expectations",
    "packed_shard_paths",
    "read_pack_meta",
    "read_packed_members",
    "read_packed_shard",
    "split_ranges",
]
