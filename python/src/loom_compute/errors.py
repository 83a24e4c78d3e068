"""Errors the user should see as one clear message, without a traceback.

`run_verb` turns a `LoomComputeError` into an `error` event carrying its message and detail,
and exits with its `exit_code`; any other exception is treated as a bug and reported with its
traceback.
"""

from __future__ import annotations

from typing import Any


class LoomComputeError(Exception):
    """A failure caused by the user's input or environment (bad file, missing model, ...)."""

    exit_code = 1

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class ConfigError(LoomComputeError):
    """A run config that cannot be loaded or does not validate; the message names file and key."""


class UsageError(LoomComputeError):
    """Bad command line: unknown verb, missing or malformed arguments."""

    exit_code = 2
