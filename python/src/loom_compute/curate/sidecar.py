"""Score sidecars: `SCORES/{shard_stem}.{scorer}.parquet` (docs/curation.md, "Score sidecars").

One row per good sample in tar order: `uid`, `key`, then one float32 column per score. The
parquet key-value metadata `loom` holds a JSON summary with the bad samples counted by reason.
A sidecar is written to a temporary sibling, fsynced and renamed, so its existence marks the
shard done and a killed job leaves no partial file under the final name.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from loom_compute.errors import UsageError

FORMAT = "loom-scores"
VERSION = 1
METADATA_KEY = b"loom"
SCORER_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]*$")
# The temporary names of src/util/atomic.ts tempPathFor: ".{name}.tmp-<pid>-<8 hex>".
TEMP_NAME_RE = re.compile(r"^\.(?P<target>.+)\.tmp-\d+-[0-9a-f]{8}$")


def check_scorer_name(name: str) -> str:
    if not SCORER_NAME_RE.fullmatch(name):
        raise UsageError(f"scorer name {name!r} must match ^[a-z][a-z0-9_-]*$ (e.g. clip, dfn)")
    return name


def shard_stem(shard: str | Path) -> str:
    name = Path(shard).name
    return name.removesuffix(".tar")


def sidecar_path(out_dir: str | Path, shard: str | Path, scorer: str) -> Path:
    return Path(out_dir) / f"{shard_stem(shard)}.{scorer}.parquet"


def temp_path_for(target: Path) -> Path:
    return target.parent / f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"


def temp_files_of(target: Path) -> list[Path]:
    """Temporary files left beside `target` by writers of it (possibly dead ones)."""
    if not target.parent.is_dir():
        return []
    found = []
    for entry in target.parent.iterdir():
        match = TEMP_NAME_RE.match(entry.name)
        if match and match.group("target") == target.name:
            found.append(entry)
    return sorted(found)


def write_sidecar(
    target: Path,
    *,
    uids: Sequence[str],
    keys: Sequence[str],
    scores: Mapping[str, np.ndarray],
    scorer: str,
    model: str,
    shard: str,
    bad_by_reason: Mapping[str, int],
) -> dict[str, Any]:
    """Writes one sidecar atomically; returns its `loom` metadata."""
    columns = list(scores)
    for name, values in scores.items():
        if len(values) != len(uids):
            raise ValueError(f"score column {name} has {len(values)} values for {len(uids)} samples")
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "scorer": scorer,
        "model": model,
        "shard": shard,
        "samples": len(uids),
        "bad": int(sum(bad_by_reason.values())),
        "bad_by_reason": {reason: int(bad_by_reason[reason]) for reason in sorted(bad_by_reason)},
        "columns": columns,
    }
    table = pa.table(
        {
            "uid": pa.array(list(uids), type=pa.string()),
            "key": pa.array(list(keys), type=pa.string()),
            **{name: pa.array(np.asarray(values, dtype=np.float32), type=pa.float32()) for name, values in scores.items()},
        }
    ).replace_schema_metadata({METADATA_KEY: json.dumps(meta, separators=(",", ":"), sort_keys=False)})
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(target)
    try:
        with open(tmp, "wb") as handle:
            pq.write_table(table, handle, compression="snappy")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return meta


def read_sidecar_meta(path: str | Path) -> dict[str, Any]:
    """The `loom` metadata of a sidecar (reads the footer only)."""
    metadata = pq.read_schema(path).metadata or {}
    raw = metadata.get(METADATA_KEY)
    if raw is None:
        raise ValueError(f"{path}: no '{METADATA_KEY.decode()}' metadata; not a Loom score sidecar")
    return json.loads(raw)
