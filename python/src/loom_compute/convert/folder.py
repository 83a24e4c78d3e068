"""Writing a whole output folder atomically: it is filled as ``<out>.tmp`` and swapped in at the end,
so a crash never leaves half a folder and the previous one survives until the new one is complete
(the rule model/export_dir.py follows for exports)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from pathlib import Path


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
