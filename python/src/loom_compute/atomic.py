"""Atomic writes: a temporary sibling, flushed and fsynced, then renamed over the target, so a
reader (or a relaunched job) sees the old file or the new one, never half of one. Whole folders
(exports, llava-hf folders) are filled as ``<out>.tmp`` and swapped in at the end, so a crash
never leaves half a folder and the previous one survives until the new one is complete."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, value: Any, indent: int | None = 1) -> None:
    write_text_atomic(path, json.dumps(value, indent=indent))


def write_folder(out: str | Path, files: Mapping[str, bytes], fill: Callable[[Path], None] | None = None) -> Path:
    """Writes ``files`` ({relative name: bytes}) and whatever ``fill(tmp_dir)`` writes, then swaps the folder in."""
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        for name, data in files.items():
            target = tmp / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        if fill is not None:
            fill(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = out.with_name(out.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    return out
