"""The worker side of Loom's process protocol (docs/architecture.md, "Process protocol").

A worker (`python -m loom_compute <verb>`, possibly under torchrun) reports to the CLI with
JSON Lines events on stdout, one object per line, flushed per line, from rank 0 only:

    {"event": "progress", "done": 3, "total": 10}
    {"event": "metric", "step": 3, "loss": 2.5}
    {"event": "log", "level": "info", "msg": "..."}
    {"event": "done", ...summary}
    {"event": "error", "msg": "...", ...detail}

Everything meant for people goes to stderr. Because libraries print to stdout freely, the
worker claims stdout for itself at start-up (`claim_stdout`): events keep a private handle
on the real stdout, while `sys.stdout` and file descriptor 1 are pointed at stderr, so a
stray `print` (or C code writing to fd 1) never corrupts the event stream.

Non-finite floats have no JSON form; they are written as the strings "NaN", "Infinity" and
"-Infinity" so a diverging loss still reaches the CLI as something readable.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Mapping
from typing import IO, Any, NoReturn

from loom_compute.errors import ConfigError, LoomComputeError, UsageError

__all__ = [
    "ConfigError",
    "Emitter",
    "LoomComputeError",
    "UsageError",
    "claim_stdout",
    "configure_logging",
    "done",
    "emitter",
    "error",
    "execute_verb",
    "is_primary",
    "log",
    "metric",
    "process_rank",
    "progress",
    "run_verb",
    "world_size",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_SIGINT = 130
EXIT_SIGTERM = 143

LOG_LEVELS = ("debug", "info", "warning", "error")
_NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}

_logger = logging.getLogger("loom_compute")


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise UsageError(f"environment variable {name} must be a non-negative integer, got {raw!r}") from None
    if value < 0:
        raise UsageError(f"environment variable {name} must be a non-negative integer, got {raw!r}")
    return value


def process_rank() -> int:
    """This process's global rank: $RANK as torchrun sets it, 0 when run on its own."""
    return _int_env("RANK", 0)


def world_size() -> int:
    """How many processes take part: $WORLD_SIZE as torchrun sets it, 1 when run on its own."""
    return max(1, _int_env("WORLD_SIZE", 1))


def _rank_or_zero() -> int:
    try:
        return process_rank()
    except UsageError:
        return 0


def is_primary() -> bool:
    """True on the process that talks to the CLI (rank 0)."""
    return process_rank() == 0


def to_jsonable(value: Any) -> Any:
    """`value` in a form `json.dumps(..., allow_nan=False)` accepts.

    Tensors and numpy values become lists or Python scalars, paths become strings,
    non-finite floats become "NaN"/"Infinity"/"-Infinity", anything else unknown its str().
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else _NON_FINITE[value]
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays, torch tensors
    if callable(tolist):
        try:
            return to_jsonable(tolist())
        except Exception:  # noqa: BLE001 - fall back to the readable form below
            pass
    return str(value)


class Emitter:
    """Writes protocol events as JSON Lines to one stream, on rank 0 only."""

    def __init__(self, stream: IO[str] | None = None, *, rank: int | None = None) -> None:
        self._stream = stream
        # A malformed $RANK is reported by execute_verb; until then assume rank 0 so it can be.
        self.rank = _rank_or_zero() if rank is None else rank
        self._lock = threading.Lock()
        self._broken = False
        self.done_emitted = False
        self.error_emitted = False

    @property
    def primary(self) -> bool:
        return self.rank == 0

    def emit(self, event: str, fields: Mapping[str, Any]) -> None:
        if "event" in fields:
            raise ValueError("'event' is a reserved key in protocol events")
        if not self.primary:
            return
        line = json.dumps({"event": event, **to_jsonable(dict(fields))}, allow_nan=False, separators=(",", ":"))
        with self._lock:
            if self._broken:
                return
            # Without an explicit stream, write where events go now (the claimed stdout).
            stream = self._stream if self._stream is not None else (_event_stream or sys.stdout)
            try:
                stream.write(line + "\n")
                stream.flush()
            except (BrokenPipeError, ValueError, OSError) as exc:
                # The reader went away (CLI killed, `| head`): keep working, stop reporting.
                self._broken = True
                print(f"loom_compute: event stream closed ({type(exc).__name__}); events are dropped from now on", file=sys.stderr)

    def progress(self, done: float, total: float | None = None, **extra: Any) -> None:
        """Work finished so far, in the verb's own unit (samples, steps, shards)."""
        _check_number("done", done)
        fields: dict[str, Any] = {"done": done}
        if total is not None:
            _check_number("total", total)
            fields["total"] = total
        fields.update(extra)
        self.emit("progress", fields)

    def metric(self, **values: Any) -> None:
        """Named measurements (loss, lr, throughput, ...), kept by the CLI."""
        self.emit("metric", values)

    def log(self, level: str, msg: str) -> None:
        """A message for the user; on ranks other than 0 it goes to stderr via `logging`."""
        if level not in LOG_LEVELS:
            raise ValueError(f"log level must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
        numeric = getattr(logging, level.upper())
        if numeric < _threshold_from_env():
            return
        if self.primary:
            self.emit("log", {"level": level, "msg": str(msg)})
        else:
            _logger.log(numeric, "%s", msg)

    def done(self, **summary: Any) -> None:
        """The verb's result; the CLI treats the run as successful only with this and exit 0."""
        self.emit("done", summary)
        self.done_emitted = True

    def error(self, msg: str, **detail: Any) -> None:
        """Why the verb failed; the CLI shows `msg` verbatim."""
        self.emit("error", {"msg": str(msg), **detail})
        self.error_emitted = True


def _check_number(name: str, value: Any) -> None:
    # numpy scalars and 0-d tensors pass (they have __float__); bools and strings do not.
    if isinstance(value, (bool, str, bytes)) or not (isinstance(value, numbers.Real) or hasattr(value, "__float__")):
        raise TypeError(f"progress {name} must be a number, got {type(value).__name__}")


_default: Emitter | None = None
_event_stream: IO[str] | None = None


def emitter() -> Emitter:
    """The process's emitter (writes to the claimed stdout once `claim_stdout` ran)."""
    global _default
    if _default is None:
        _default = Emitter()
    return _default


def progress(done: float, total: float | None = None, **extra: Any) -> None:
    emitter().progress(done, total, **extra)


def metric(**values: Any) -> None:
    emitter().metric(**values)


def log(level: str, msg: str) -> None:
    emitter().log(level, msg)


def done(**summary: Any) -> None:
    emitter().done(**summary)


def error(msg: str, **detail: Any) -> None:
    emitter().error(msg, **detail)


def claim_stdout() -> IO[str]:
    """Keeps the real stdout for events and points everything else that writes there at stderr.

    Both levels are redirected: `sys.stdout` (Python prints) and file descriptor 1 (C
    libraries, subprocesses that inherit it). Idempotent; returns the event stream.
    """
    global _event_stream
    if _event_stream is not None:
        return _event_stream
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    try:
        events_fd = os.dup(1)
        os.dup2(2, 1)
        stream: IO[str] = os.fdopen(events_fd, "w", encoding="utf-8", buffering=1)
    except OSError:
        stream = sys.stdout  # no usable fd 1 (embedded interpreters): keep what we have
    sys.stdout = sys.stderr
    _event_stream = stream
    return stream


def _log_level_name() -> str:
    name = os.environ.get("LOOM_LOG_LEVEL", "info").strip().lower() or "info"
    if name not in LOG_LEVELS:
        raise UsageError(f"environment variable LOOM_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {name!r}")
    return name


def _threshold_from_env() -> int:
    try:
        return getattr(logging, _log_level_name().upper())
    except UsageError:  # reported by configure_logging at start-up
        return logging.INFO


def configure_logging() -> None:
    """Human logs to stderr; with more than one process each line carries its rank.

    The level comes from $LOOM_LOG_LEVEL (debug, info, warning, error; default info).
    """
    level_name = _log_level_name()
    prefix = f"[rank {process_rank()}/{world_size()}] " if world_size() > 1 else ""
    logging.basicConfig(
        level=getattr(logging, level_name.upper()),
        stream=sys.stderr,
        format=f"{prefix}%(levelname)s %(name)s: %(message)s",
        force=True,
    )


class Terminated(BaseException):
    """Raised in the main thread when SIGTERM arrives, so clean-up code runs."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


def _ignore_further_interrupts() -> None:
    # The CLI forwards SIGINT and the terminal also sends it to the whole process group:
    # a second one must not interrupt the reporting of the first.
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(sig, signal.SIG_IGN)
        except (ValueError, OSError):
            pass


def _detail_fields(detail: Mapping[str, Any]) -> dict[str, Any]:
    # An error's detail must not break its own report by reusing the event's keys.
    return {key: value for key, value in detail.items() if key not in ("event", "msg")}


def _say(text: str) -> None:
    """One line for people on stderr, labelled with the rank when several processes share it."""
    try:
        prefix = f"[rank {process_rank()}/{world_size()}] " if world_size() > 1 else ""
    except UsageError:
        prefix = ""
    print(f"{prefix}loom_compute: {text}", file=sys.stderr, flush=True)


def execute_verb(fn: Callable[[], Mapping[str, Any] | None]) -> int:
    """Runs `fn` as the worker's verb and reports its outcome; returns the exit code.

    - success: emits `done` with `fn`'s returned mapping unless `fn` emitted `done` itself; 0.
    - `LoomComputeError`: `error` with its message and detail; its `exit_code` (1, 2 for usage).
    - any other exception: `error` "<Type>: <message>" with a `traceback` detail, and the
      traceback on stderr; 1.
    - Ctrl-C: `error` "interrupted"; 130. SIGTERM: `error` "interrupted"; 143.
    """
    claim_stdout()
    out = emitter()
    try:
        out.rank = process_rank()
    except UsageError as exc:
        out.rank = 0
        out.error(exc.message, **_detail_fields(exc.detail))
        return exc.exit_code
    previous_term = None
    if threading.current_thread() is threading.main_thread():
        previous_term = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        configure_logging()
        summary = fn()
        if not out.done_emitted and not out.error_emitted:
            out.done(**dict(summary or {}))
        return EXIT_FAILURE if out.error_emitted else EXIT_OK
    except KeyboardInterrupt:
        _ignore_further_interrupts()
        out.error("interrupted", signal="SIGINT")
        _say("interrupted (SIGINT)")
        return EXIT_SIGINT
    except Terminated:
        _ignore_further_interrupts()
        out.error("interrupted", signal="SIGTERM")
        _say("interrupted (SIGTERM)")
        return EXIT_SIGTERM
    except LoomComputeError as exc:
        out.error(exc.message, **_detail_fields(exc.detail))
        _say(f"error: {exc.message}")
        return exc.exit_code
    except SystemExit as exc:
        if exc.code in (None, 0):
            if not out.done_emitted and not out.error_emitted:
                out.done()
            return EXIT_OK
        if isinstance(exc.code, int):
            out.error(f"exited with status {exc.code}", exit_code=exc.code)
            return exc.code
        out.error(str(exc.code))
        return EXIT_FAILURE
    except Exception as exc:  # noqa: BLE001 - every failure must reach the CLI as an event
        tb = traceback.format_exc()
        message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        _say(f"failed: {message}")
        traceback.print_exc(file=sys.stderr)
        out.error(message, type=type(exc).__name__, traceback=tb)
        return EXIT_FAILURE
    finally:
        if previous_term is not None:
            try:
                signal.signal(signal.SIGTERM, previous_term)
            except (ValueError, OSError):
                pass
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass


def run_verb(fn: Callable[[], Mapping[str, Any] | None]) -> NoReturn:
    """`execute_verb(fn)`, then exits the process with its code."""
    sys.exit(execute_verb(fn))
