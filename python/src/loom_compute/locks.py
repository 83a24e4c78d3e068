"""One writer per output: an O_EXCL lock file naming its holder (pid, its start time, host).

The same rule as the TS side's output folders (src/util/outputDir.ts): a second run on the same
output is refused while the first is alive; a lock left by a dead run (its pid gone, or reused by
a process with another start time) is taken over; a lock from another host cannot be checked
from here, so it is refused with the file named for the user to remove.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from loom_compute.errors import LoomComputeError


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks): tells a reused pid from the holder."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2 :].split()[19]


def _alive(holder: dict) -> bool:
    pid = int(holder.get("pid", -1))
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    started = holder.get("start")
    return started is None or _start_time(pid) in (None, started)


@contextmanager
def output_lock(path: Path, what: str) -> Iterator[None]:
    """Holds ``path`` (e.g. ``answers.jsonl.part-0.lock``) for the duration; ``what`` names the output."""
    me = {"pid": os.getpid(), "start": _start_time(os.getpid()), "host": socket.gethostname()}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(path.read_text(encoding="utf-8"))
                if not isinstance(holder, dict):
                    raise ValueError("not an object")
            except (OSError, ValueError):
                raise LoomComputeError(f"{what}: {path} exists but is not a Loom lock; remove it if no run is writing {what}") from None
            if holder.get("host") != me["host"]:
                raise LoomComputeError(f"{what}: {path} is held by pid {holder.get('pid')} on {holder.get('host')}; remove it if that run is gone")
            if _alive(holder):
                raise LoomComputeError(f"{what}: another run (pid {holder.get('pid')}) is writing it; wait for it or stop it")
            path.unlink(missing_ok=True)  # a dead run's lock
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(me, handle)
        break
    else:
        raise LoomComputeError(f"{what}: could not take {path}")
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
