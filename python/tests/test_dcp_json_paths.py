"""A checkpoint index cannot make a load read files outside the checkpoint folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from loom_compute.errors import LoomComputeError
from loom_compute.train.dcp_json import FORMAT, METADATA_FILE, VERSION, JsonMetadataReader


def write_index(folder: Path, relative_path: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    index = {
        "format": FORMAT,
        "version": VERSION,
        "dcp_version": "1.0.0",
        "state_dict": {
            "w": {
                "kind": "tensor", "size": [1], "dtype": "torch.float32", "layout": "torch.strided", "requires_grad": False,
                "memory_format": "torch.contiguous_format", "pin_memory": False, "chunks": [{"offsets": [0], "sizes": [1]}],
            }
        },
        "planner_data": None,
        "storage": [
            {"fqn": "w", "offset": [0], "index": 0, "relative_path": relative_path, "byte_offset": 0, "length": 4, "transform_descriptors": None}
        ],
    }
    (folder / METADATA_FILE).write_text(json.dumps(index), encoding="utf-8")


def test_a_file_inside_the_checkpoint_is_accepted(tmp_path: Path) -> None:
    write_index(tmp_path / "ckpt", "__0_0.distcp")
    metadata = JsonMetadataReader(str(tmp_path / "ckpt")).read_metadata()
    assert [info.relative_path for info in metadata.storage_data.values()] == ["__0_0.distcp"]


@pytest.mark.parametrize("relative_path", ["../secret", "sub/../../secret", "/etc/passwd", ""])
def test_a_path_outside_the_checkpoint_is_refused(tmp_path: Path, relative_path: str) -> None:
    (tmp_path / "secret").write_bytes(b"1234")
    write_index(tmp_path / "ckpt", relative_path)
    with pytest.raises(LoomComputeError) as caught:
        JsonMetadataReader(str(tmp_path / "ckpt")).read_metadata()
    message = str(caught.value)
    assert METADATA_FILE in message and repr(relative_path) in message and "'w'" in message


def test_a_link_out_of_the_checkpoint_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret").write_bytes(b"1234")
    write_index(tmp_path / "ckpt", "__0_0.distcp")
    os.symlink(tmp_path / "secret", tmp_path / "ckpt" / "__0_0.distcp")
    with pytest.raises(LoomComputeError, match="resolves outside the checkpoint folder"):
        JsonMetadataReader(str(tmp_path / "ckpt")).read_metadata()
