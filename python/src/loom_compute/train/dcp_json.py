"""DCP storage whose metadata file is JSON, not pickle.

``torch.distributed.checkpoint``'s file system writer stores the checkpoint's index (which tensor
chunk lives at which byte range of which file) as ``.metadata`` with plain ``pickle``, and its
reader loads it with ``pickle.load``: opening someone else's checkpoint could run their code.
Loom keeps DCP (sharded saves, resharding on load, parallel I/O) and swaps only that one file for
``.metadata.json``. The tensor files stay DCP's own (torch's zip format), read back with
``torch.load(weights_only=True)``, whose restricted unpickler rebuilds tensors and nothing else.
Non-tensor state never goes through DCP here (the trainer keeps it in JSON), and both sides refuse
a non-tensor entry: DCP would read one with ``torch.load(weights_only=False)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch.distributed.checkpoint import FileSystemReader, FileSystemWriter
from torch.distributed.checkpoint.filesystem import CURRENT_DCP_VERSION, _StorageInfo
from torch.distributed.checkpoint.metadata import (
    BytesStorageMetadata,
    ChunkStorageMetadata,
    Metadata,
    MetadataIndex,
    StorageMeta,
    TensorProperties,
    TensorStorageMetadata,
)

from loom_compute.atomic import write_json_atomic
from loom_compute.errors import LoomComputeError

METADATA_FILE = ".metadata.json"
FORMAT = "loom-dcp-metadata"
VERSION = 1


def _torch_attr(name: str) -> Any:
    """``"torch.float32"`` -> ``torch.float32`` (dtypes, layouts, memory formats only)."""
    prefix, _, attr = name.partition(".")
    value = getattr(torch, attr, None) if prefix == "torch" else None
    if not isinstance(value, (torch.dtype, torch.layout, torch.memory_format)):
        raise LoomComputeError(f"checkpoint metadata names an unknown torch attribute {name!r}")
    return value


def _size(values: Any) -> torch.Size | None:
    return None if values is None else torch.Size(int(v) for v in values)


def _entry_to_json(fqn: str, entry: Any) -> dict[str, Any]:
    if isinstance(entry, BytesStorageMetadata):
        raise LoomComputeError(f"checkpoint entry {fqn!r} is not a tensor: keep non-tensor state out of DCP (it would be pickled)")
    props = entry.properties
    return {
        "kind": "tensor",
        "size": list(entry.size),
        "dtype": str(props.dtype),
        "layout": str(props.layout),
        "requires_grad": bool(props.requires_grad),
        "memory_format": str(props.memory_format),
        "pin_memory": bool(props.pin_memory),
        "chunks": [{"offsets": list(c.offsets), "sizes": list(c.sizes)} for c in entry.chunks],
    }


def _entry_from_json(fqn: str, data: dict[str, Any]) -> Any:
    if data["kind"] != "tensor":
        # DCP's planner reads non-tensor entries with torch.load(weights_only=False): never accept one.
        raise LoomComputeError(f"checkpoint entry {fqn!r} has kind {data['kind']!r}; a Loom checkpoint holds tensors only")
    properties = TensorProperties(
        dtype=_torch_attr(data["dtype"]),
        layout=_torch_attr(data["layout"]),
        requires_grad=bool(data["requires_grad"]),
        memory_format=_torch_attr(data["memory_format"]),
        pin_memory=bool(data["pin_memory"]),
    )
    chunks = [ChunkStorageMetadata(offsets=_size(c["offsets"]), sizes=_size(c["sizes"])) for c in data["chunks"]]
    return TensorStorageMetadata(properties=properties, size=_size(data["size"]), chunks=chunks)


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def metadata_to_json(metadata: Metadata) -> dict[str, Any]:
    storage = [
        {
            "fqn": index.fqn,
            "offset": None if index.offset is None else list(index.offset),
            "index": index.index,
            "relative_path": info.relative_path,
            "byte_offset": int(info.offset),
            "length": int(info.length),
            "transform_descriptors": None if info.transform_descriptors is None else list(info.transform_descriptors),
        }
        for index, info in (metadata.storage_data or {}).items()
    ]
    planner = metadata.planner_data
    return {
        "format": FORMAT,
        "version": VERSION,
        "dcp_version": metadata.version,
        "state_dict": {fqn: _entry_to_json(fqn, entry) for fqn, entry in metadata.state_dict_metadata.items()},
        "planner_data": {k: list(v) for k, v in planner.items()} if isinstance(planner, dict) else None,
        "storage": storage,
    }


def metadata_from_json(data: dict[str, Any]) -> Metadata:
    if data.get("format") != FORMAT or data.get("version") != VERSION:
        raise LoomComputeError(f"not a {FORMAT} v{VERSION} file (format {data.get('format')!r}, version {data.get('version')!r})")
    storage = {
        MetadataIndex(fqn=s["fqn"], offset=_size(s["offset"]), index=s["index"]): _StorageInfo(
            relative_path=s["relative_path"],
            offset=int(s["byte_offset"]),
            length=int(s["length"]),
            transform_descriptors=s["transform_descriptors"],
        )
        for s in data["storage"]
    }
    planner = data.get("planner_data")
    return Metadata(
        state_dict_metadata={fqn: _entry_from_json(fqn, entry) for fqn, entry in data["state_dict"].items()},
        planner_data=None if planner is None else {k: _tuples(v) for k, v in planner.items()},
        storage_data=storage,
        storage_meta=StorageMeta(),
        version=data.get("dcp_version"),
    )


class JsonMetadataWriter(FileSystemWriter):
    """DCP's file system writer, with the index written as ``.metadata.json`` (atomically)."""

    def finish(self, metadata: Metadata, results: list[list[Any]]) -> None:
        metadata.version = CURRENT_DCP_VERSION
        metadata.storage_data = {wr.index: wr.storage_data for wr_list in results for wr in wr_list}
        write_json_atomic(Path(self.path) / METADATA_FILE, metadata_to_json(metadata), indent=None)


class JsonMetadataReader(FileSystemReader):
    """DCP's file system reader, reading the index from ``.metadata.json``."""

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        path = Path(self.path) / METADATA_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise LoomComputeError(f"{path}: missing; {Path(self.path)} is not a complete Loom checkpoint") from None
        except json.JSONDecodeError as exc:
            raise LoomComputeError(f"{path}: not valid JSON ({exc})") from None
        try:
            metadata = metadata_from_json(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise LoomComputeError(f"{path}: malformed checkpoint index ({exc!r})") from None
        _confine_storage(metadata, Path(self.path), path)
        metadata.storage_meta.load_id = self.load_id
        return metadata


def _confine_storage(metadata: Metadata, folder: Path, index_file: Path) -> None:
    """Refuses a ``relative_path`` that leaves the checkpoint folder: DCP joins it to the folder
    and reads it, so a crafted index could make a load read any file the user can read."""
    root = folder.resolve()
    for index, info in (metadata.storage_data or {}).items():
        rel = info.relative_path
        where = f"{index_file}: entry {index.fqn!r} names the file {rel!r}"
        if not isinstance(rel, str) or rel == "" or "\0" in rel:
            raise LoomComputeError(f"{where}, which is not a file name")
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise LoomComputeError(f"{where}, outside the checkpoint folder {folder}")
        if not (root / rel).resolve().is_relative_to(root):
            raise LoomComputeError(f"{where}, which resolves outside the checkpoint folder {folder} (a link?)")
